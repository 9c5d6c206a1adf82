use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use wecom_provider::app::StartOptions;

use crate::helpers::*;

#[tokio::test]
async fn a_restart_on_the_same_database_keeps_events_and_the_ticket() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let (status, _) =
        app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "kept")).await;
    assert_eq!(status, 200);
    let first_seen = eventually("ticket applied", || async {
        let view = app.suite_view(SUITE_ID).await;
        (view["has_ticket"] == true).then_some(view["ticket_updated_at"].clone())
    })
    .await;
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
    eventually("ticket applied after restart", || async {
        (app.suite_view(SUITE_ID).await["has_ticket"] == true).then_some(())
    })
    .await;
    let events = app.events().await;
    assert_eq!(events[0]["status"], "done");
    assert_eq!(events[0]["attempts"], 1);
    app.stop().await;
}

/// The binary is killed with SIGKILL right after answering: every callback it
/// acknowledged must be in the database when it comes back.
#[tokio::test]
async fn callbacks_acknowledged_before_a_kill_9_survive_it() {
    let db = TestDb::new();
    let env = env_for(&db);
    let mut child = Command::new(env!("CARGO_BIN_EXE_wecom-provider"))
        .arg("serve")
        .env_clear()
        .envs(&env)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let addr = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                line.contains("listening")
                    .then(|| {
                        line.split("addr=").nth(1).map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
                    })
                    .flatten()
            })
            .expect("the service logs its address");
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        addr
    })
    .await
    .unwrap();

    let client = reqwest::Client::new();
    let keys = suite_keys();
    let posts = (0..40).map(|i| {
        let xml = suite_ticket_xml(SUITE_ID, &format!("ticket-{i}"));
        let sealed = Sealed::new(&keys, SUITE_ID, &xml);
        let url = format!("http://{addr}{}?{}", command_path(SUITE_ID), sealed.query());
        let client = client.clone();
        async move {
            let response = client.post(url).body(sealed.body()).send().await.expect("post");
            (response.status().as_u16(), response.text().await.unwrap_or_default())
        }
    });
    let results = futures_util::future::join_all(posts).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
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
