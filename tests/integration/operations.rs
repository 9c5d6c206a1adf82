//! What an operator sees: Prometheus metrics on their own listener, a request id
//! on every answer and in the logs, and JSON logs.

use crate::fake_wecom::{FakeWecom, Injection};
use crate::helpers::*;

/// The `/metrics` address a binary logged.
fn metrics_url(app: &TestApp) -> String {
    let output = app.output();
    let line = output.lines().find(|line| line.contains("metrics listening")).expect("metrics address logged");
    format!("http://{}/metrics", logged_addr(line).expect("addr field"))
}

/// The value of one sample line (`name{labels} value`) of a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_callbacks_and_report_ticket_age_without_secrets() {
    let db = TestDb::new();
    let app = TestApp::spawn_binary(&db, |env| {
        env.insert("METRICS_ADDR".into(), "127.0.0.1:0".into());
    })
    .await;
    let keys = suite_keys();
    for n in 0..3 {
        let ticket = suite_ticket_xml(SUITE_ID, &format!("metrics-ticket-{n}"));
        assert_eq!(app.post_callback(&command_path(SUITE_ID), &keys, SUITE_ID, &ticket).await.0, 200);
    }
    let forged = Sealed::new(&provider_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "forged"));
    let (status, _) = app.post_raw(&format!("{}?{}", command_path(SUITE_ID), forged.query()), forged.body()).await;
    assert_eq!(status, 401);

    let scrape = eventually("every ticket's effect is applied", || async {
        let scrape = app.client.get(metrics_url(&app)).send().await.ok()?.text().await.ok()?;
        (sample(&scrape, "wecom_effects_pending") == Some(0.0)).then_some(scrape)
    })
    .await;
    assert_eq!(sample(&scrape, &format!("wecom_suite_has_ticket{{suite_id=\"{SUITE_ID}\"}}")), Some(1.0));
    let callbacks = |status: &str| {
        sample(&scrape, &format!("wecom_callbacks_total{{route=\"command\",method=\"POST\",status=\"{status}\"}}"))
    };
    assert_eq!(callbacks("200"), Some(3.0), "{scrape}");
    assert_eq!(callbacks("401"), Some(1.0));
    let age = sample(&scrape, &format!("wecom_suite_ticket_age_seconds{{suite_id=\"{SUITE_ID}\"}}")).expect("age");
    assert!((0.0..60.0).contains(&age), "ticket age {age}");
    assert_eq!(sample(&scrape, "wecom_effects_oldest_pending_age_seconds"), Some(0.0));
    assert!(sample(&scrape, "wecom_intake_batch_size_count").is_some_and(|batches| batches >= 1.0));
    assert!(sample(&scrape, "wecom_callback_ack_seconds_count{route=\"command\"}").is_some_and(|n| n >= 4.0));
    for secret in [SUITE_SECRET, PROVIDER_SECRET, SUITE_AES_KEY, "metrics-ticket-2", "wwCorp"] {
        assert!(!scrape.contains(secret), "the scrape shows {secret}");
    }
    // Never beside the public callback URLs.
    assert_eq!(app.get_raw("/metrics").await.0, 404);
    app.stop().await;
}

#[tokio::test]
async fn every_answer_carries_a_request_id_that_its_log_lines_name() {
    let db = TestDb::new();
    let app = TestApp::spawn_binary(&db, |env| {
        env.insert("LOG_FORMAT".into(), "json".into());
    })
    .await;
    let sealed = Sealed::new(&suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "traced"));
    let response = app
        .client
        .post(app.url(&format!("{}?{}", command_path(SUITE_ID), sealed.query())))
        .header("x-request-id", "trace-4f2a.1")
        .body(sealed.body())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-request-id"], "trace-4f2a.1");

    let forged = app.client.get(app.url("/healthz")).header("x-request-id", "a b\tc").send().await.expect("answer");
    let fresh = forged.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert!(fresh.len() == 32 && fresh.bytes().all(|b| b.is_ascii_hexdigit()), "{fresh}");

    let accepted = eventually("the callback's log line", || async {
        app.output().lines().find(|line| line.contains("callback accepted")).map(str::to_owned)
    })
    .await;
    let line: serde_json::Value = serde_json::from_str(&accepted).expect("a JSON log line");
    assert_eq!(line["message"], "callback accepted");
    assert_eq!(line["kind"], "suite_ticket");
    assert_eq!(line["suite"], SUITE_ID);
    assert_eq!(line["route"], "command");
    assert!(line["event_id"].as_i64().is_some_and(|id| id > 0), "{line}");
    assert!(line["latency_ms"].is_u64());
    assert_eq!(line["span"]["request_id"], "trace-4f2a.1", "{line}");
    assert!(!app.output().contains("traced"), "the ticket is never logged");

    // The effect of a callback runs later, in a span that names the callback's
    // request (here it fails: the suite has no ticket WeCom would accept).
    let create = Sealed::new(&suite_keys(), SUITE_ID, &create_auth_xml(SUITE_ID, "auth-code-traced", 1_700_000_900));
    let response = app
        .client
        .post(app.url(&format!("{}?{}", command_path(SUITE_ID), create.query())))
        .header("x-request-id", "trace-effect-7")
        .body(create.body())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 200);
    let failed = eventually("the effect's log line", || async {
        app.output()
            .lines()
            .find(|line| line.contains("effect failed") && line.contains("create_auth"))
            .map(str::to_owned)
    })
    .await;
    let line: serde_json::Value = serde_json::from_str(&failed).expect("a JSON log line");
    assert_eq!(line["span"]["name"], "effect", "{line}");
    assert_eq!(line["span"]["request_id"], "trace-effect-7", "{line}");
    assert!(!app.output().contains("auth-code-traced"), "the auth code is never logged");
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_wecom_errcodes_by_endpoint() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = TestApp::spawn_binary(&db, |env| {
        env.insert("METRICS_ADDR".into(), "127.0.0.1:0".into());
        env.insert("WECOM_API_BASE".into(), fake.base.clone());
    })
    .await;
    fake.add_provider(&app.seeded_provider, PROVIDER_SECRET);
    fake.add_suite(&app.seeded_provider, &app.seeded_suite, SUITE_SECRET);
    app.push_ticket(&fake).await;
    fake.inject("service/get_suite_token", Injection::Errcode(45009));
    let (status, body) = app.api(&format!("/api/v1/suites/{}/token", app.seeded_suite)).await;
    assert_eq!(status, 429, "45009 is WeCom's frequency limit: {body}");

    let scrape = app.client.get(metrics_url(&app)).send().await.expect("scrape").text().await.expect("text");
    let series = "wecom_api_errcodes_total{endpoint=\"service/get_suite_token\",errcode=\"45009\"}";
    assert_eq!(sample(&scrape, series), Some(1.0), "{scrape}");
    assert!(!scrape.contains("suite_access_token"), "no token or query string in a label");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn readyz_answers_503_while_migrations_wait_for_another_instance() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, PgConnection};
    let db = TestDb::new();
    if !db.is_postgres() {
        println!("SKIPPED on SQLite: only PostgreSQL migrations wait on another instance's lock");
        return;
    }
    // Another instance migrating: it holds the service's migration lock.
    let mut other = PgConnection::establish(&db.url_string()).expect("connect");
    other.batch_execute("SELECT pg_advisory_lock(131277343649025)").expect("lock"); // MIGRATION_LOCK_KEY
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let client = test_client();
    let waiting = async {
        let answer = eventually("the address answers while migrations wait", || async {
            let response = client.get(&readyz).send().await.ok()?;
            Some((response.status().as_u16(), response.json::<serde_json::Value>().await.ok()?))
        })
        .await;
        other.batch_execute("SELECT pg_advisory_unlock(131277343649025)").expect("unlock");
        answer
    };
    let (app, (status, body)) = tokio::join!(
        TestApp::spawn_binary(&db, |env| {
            env.insert("LISTEN_ADDR".into(), format!("127.0.0.1:{port}"));
        }),
        waiting
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, serde_json::json!({"ready": false, "migrations": "running"}));
    let (status, body) = app.get_raw("/readyz").await;
    assert_eq!(status, 200, "ready once migrated: {body}");
    app.stop().await;
}
