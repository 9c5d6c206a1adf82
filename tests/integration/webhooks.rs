//! Webhooks against real receivers on loopback ports that answer 200, 500 or 302,
//! hang, or drop the connection. Signatures are checked with `standardwebhooks`, the
//! specification's own implementation, not with the service's signing code.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use wecom_provider::app::StartOptions;
use wecom_provider::feed::FeedEvent;
use wecom_provider::webhooks::RetrySchedule;

use crate::helpers::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    Ok,
    /// 500 with a long body, to see that the stored error is short.
    Error,
    Hang,
    Drop,
    /// 302 to `redirect_to`.
    Redirect,
}

struct Received {
    headers: http::HeaderMap,
    body: Vec<u8>,
    answer: Answer,
}

impl Received {
    fn event_id(&self) -> i64 {
        self.headers["webhook-id"].to_str().expect("well-formed").parse().expect("well-formed")
    }
}

struct ReceiverState {
    answer: Answer,
    redirect_to: String,
    received: Vec<Received>,
}

/// An HTTP/1.1 endpoint with keep-alive that records every request.
#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("well-formed");
        let url = format!("http://{}/hook", listener.local_addr().expect("well-formed"));
        let state = Arc::new(Mutex::new(ReceiverState { answer, redirect_to: String::new(), received: Vec::new() }));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Receiver { url, state }
    }

    fn answer(&self, answer: Answer) {
        self.state.lock().expect("receiver lock").answer = answer;
    }

    fn redirect_to(&self, url: &str) {
        self.state.lock().expect("receiver lock").redirect_to = url.to_owned();
    }

    fn count(&self) -> usize {
        self.state.lock().expect("receiver lock").received.len()
    }

    /// Calls `f` with the requests so far.
    fn with<T>(&self, f: impl FnOnce(&[Received]) -> T) -> T {
        f(&self.state.lock().expect("receiver lock").received)
    }

    /// Ids of the events answered 200, in arrival order.
    fn delivered(&self) -> Vec<i64> {
        self.with(|all| all.iter().filter(|r| r.answer == Answer::Ok).map(Received::event_id).collect())
    }

    async fn wait_delivered(&self, count: usize) -> Vec<i64> {
        eventually(&format!("{count} deliveries at {}", self.url), || async {
            let delivered = self.delivered();
            (delivered.len() >= count).then_some(delivered)
        })
        .await
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<ReceiverState>>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut headers = http::HeaderMap::new();
        let mut first = true;
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if std::mem::take(&mut first) {
                continue;
            }
            let (name, value) = line.split_once(':').expect("well-formed");
            headers.append(
                http::HeaderName::from_bytes(name.trim().as_bytes()).expect("well-formed"),
                value.trim().parse().expect("well-formed"),
            );
        }
        let length: usize =
            headers.get("content-length").map_or(0, |v| v.to_str().expect("well-formed").parse().expect("well-formed"));
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let (answer, redirect_to) = {
            let mut state = state.lock().expect("receiver lock");
            let answer = state.answer;
            state.received.push(Received { headers, body, answer });
            (answer, state.redirect_to.clone())
        };
        let response = match answer {
            Answer::Ok => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_owned(),
            Answer::Error => {
                let body = format!("receiver broken\n{}", "x".repeat(1000));
                format!("HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\n\r\n{body}", body.len())
            }
            Answer::Redirect => format!("HTTP/1.1 302 Found\r\nlocation: {redirect_to}\r\ncontent-length: 0\r\n\r\n"),
            Answer::Hang => std::future::pending().await,
            Answer::Drop => return,
        };
        if stream.get_mut().write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The app with the first retry after 200 ms instead of 5 s.
async fn spawn_fast(db: &TestDb, run_worker: bool) -> TestApp {
    let options = StartOptions {
        run_worker,
        webhook_retries: RetrySchedule::with_first_retry(Duration::from_millis(200)),
        ..StartOptions::default()
    };
    TestApp::spawn_with(db, options, |_| {}).await
}

async fn send(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Subscribes `url`; returns the id and the secret.
async fn subscribe(app: &TestApp, body: Value) -> (String, String) {
    let (status, created) = send(app, reqwest::Method::POST, "/api/v1/webhooks", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    (
        created["id"].as_str().expect("well-formed").to_owned(),
        created["secret"].as_str().expect("well-formed").to_owned(),
    )
}

async fn ticket(app: &TestApp, value: &str) {
    let (status, body) =
        app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, value)).await;
    assert_eq!((status, body.as_str()), (200, "success"));
}

async fn cancel_auth(app: &TestApp, timestamp: i64) {
    app.command(&auth_event_xml(SUITE_ID, "cancel_auth", "wwcorpcancelled", timestamp)).await;
}

async fn event_ids(app: &TestApp, kind: &str) -> Vec<i64> {
    app.events().await.iter().filter(|e| e["kind"] == kind).map(|e| e["id"].as_i64().expect("well-formed")).collect()
}

async fn deliveries(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, body) = app.api(&format!("/api/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().expect("well-formed").clone()
}

fn verify(secret: &str, received: &Received) {
    standardwebhooks::Webhook::new(secret)
        .expect("a Standard Webhooks secret")
        .verify(&received.body, &received.headers)
        .expect("the signature verifies");
}

#[tokio::test]
async fn creating_a_webhook_answers_its_secret_once_and_never_again() {
    let db = TestDb::new();
    let app = spawn_fast(&db, true).await;
    let body = json!({"url": "https://hooks.example.com/wecom?x=1", "kinds": ["create_auth"], "suite_id": SUITE_ID});
    let (status, created) = send(&app, reqwest::Method::POST, "/api/v1/webhooks", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wh_") && id.len() > 10, "{id}");
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(standardwebhooks::Webhook::new(&secret).is_ok());
    assert_eq!(created["kinds"], json!(["create_auth"]));
    assert_eq!(created["enabled"], true);

    let (_, list) = app.api("/api/v1/webhooks").await;
    let (_, one) = app.api(&format!("/api/v1/webhooks/{id}")).await;
    let (status, patched) =
        send(&app, reqwest::Method::PATCH, &format!("/api/v1/webhooks/{id}"), Some(json!({"enabled": false}))).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["enabled"], false);
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    assert_eq!(one["url"], "https://hooks.example.com/wecom?x=1");
    for answer in [&list, &one, &patched] {
        let text = answer.to_string();
        assert!(!text.contains(&secret[6..]) && !text.contains("secret"), "{text}");
    }

    let bad_bodies = [
        json!({"url": "ftp://hooks.example.com/x"}),
        json!({"url": "javascript:alert(1)"}),
        json!({"url": "not a url"}),
        json!({"url": "http://"}),
        json!({"kinds": ["create_auth"]}),
        json!({"url": "https://hooks.example.com/", "kinds": ["create-auth"]}),
        json!({"url": "https://hooks.example.com/", "kinds": "create_auth"}),
        json!({"url": "https://hooks.example.com/", "secret": "whsec_AAAA"}),
    ];
    for bad in bad_bodies {
        let (status, body) = send(&app, reqwest::Method::POST, "/api/v1/webhooks", Some(bad.clone())).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_body")), "{bad}: {body}");
        assert!(body["error"]["message"].is_string());
    }
    for bad in [json!({"url": "file:///etc/passwd"}), json!({"kinds": ["a b"]}), json!({"enabled": "yes"})] {
        let (status, body) = send(&app, reqwest::Method::PATCH, &format!("/api/v1/webhooks/{id}"), Some(bad)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_body")), "{body}");
    }
    let (_, after) = app.api("/api/v1/webhooks").await;
    assert_eq!(after["webhooks"], json!([patched]), "refused requests changed nothing");

    let (status, _) = app.api("/api/v1/webhooks/wh_nosuch").await;
    assert_eq!(status, 404);
    let (status, _) = send(&app, reqwest::Method::DELETE, "/api/v1/webhooks/wh_nosuch", None).await;
    assert_eq!(status, 404);
    let response = app.client.get(app.url("/api/v1/webhooks")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401, "behind the bearer token");
    app.stop().await;
}

#[tokio::test]
async fn events_arrive_signed_with_the_feeds_json() {
    let db = TestDb::new();
    // Without the worker an event's status stays put, so the feed shows what was sent.
    let app = spawn_fast(&db, false).await;
    let receiver = Receiver::start(Answer::Ok).await;
    ticket(&app, "before-the-subscription").await;
    let (_, secret) = subscribe(&app, json!({"url": receiver.url})).await;
    for i in 0..3 {
        ticket(&app, &format!("t{i}")).await;
    }
    let delivered = receiver.wait_delivered(3).await;
    let feed = app.events().await;
    let expected: Vec<i64> = feed[1..].iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let mut sorted = delivered.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected, "every event after the subscription's creation, once, and none before");

    receiver.with(|all| {
        for received in all {
            verify(&secret, received);
            assert_eq!(received.headers["content-type"], "application/json");
            let timestamp: i64 = received.headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            assert!((timestamp - i64::try_from(now).unwrap()).abs() < 60, "unix seconds of the attempt");
            let in_feed = feed.iter().find(|e| e["id"].as_i64() == Some(received.event_id())).unwrap();
            let event: FeedEvent = serde_json::from_value(in_feed.clone()).unwrap();
            assert_eq!(received.body, serde_json::to_vec(&event).unwrap(), "the feed's JSON, byte for byte");
            let other = standardwebhooks::Webhook::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
            assert!(other.verify(&received.body, &received.headers).is_err(), "another secret does not verify");
            let mut tampered = received.body.clone();
            tampered[1] ^= 1;
            let ours = standardwebhooks::Webhook::new(&secret).unwrap();
            assert!(ours.verify(&tampered, &received.headers).is_err(), "a changed body does not verify");
        }
    });
    app.stop().await;
}

#[tokio::test]
async fn kind_and_suite_filters_choose_the_events() {
    let db = TestDb::new();
    let app = spawn_fast(&db, true).await;
    let (by_kind, by_suite, other_suite, both) = (
        Receiver::start(Answer::Ok).await,
        Receiver::start(Answer::Ok).await,
        Receiver::start(Answer::Ok).await,
        Receiver::start(Answer::Ok).await,
    );
    subscribe(&app, json!({"url": by_kind.url, "kinds": ["cancel_auth"]})).await;
    subscribe(&app, json!({"url": by_suite.url, "suite_id": SUITE_ID})).await;
    subscribe(&app, json!({"url": other_suite.url, "suite_id": "wwothersuite"})).await;
    subscribe(&app, json!({"url": both.url, "kinds": ["suite_ticket", "create_auth"], "suite_id": SUITE_ID})).await;
    ticket(&app, "t1").await;
    cancel_auth(&app, 1_700_000_500).await;
    ticket(&app, "t2").await;

    let (tickets, cancels) = (event_ids(&app, "suite_ticket").await, event_ids(&app, "cancel_auth").await);
    assert_eq!((tickets.len(), cancels.len()), (2, 1));
    assert_eq!(by_kind.wait_delivered(1).await, cancels);
    let mut suite_events = by_suite.wait_delivered(3).await;
    suite_events.sort_unstable();
    let mut all = [tickets.clone(), cancels].concat();
    all.sort_unstable();
    assert_eq!(suite_events, all);
    let mut ticket_events = both.wait_delivered(2).await;
    ticket_events.sort_unstable();
    assert_eq!(ticket_events, tickets);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(other_suite.count(), 0, "another suite's subscription gets nothing");
    assert_eq!((by_kind.count(), by_suite.count(), both.count()), (1, 3, 2), "nothing else, nothing twice");
    app.stop().await;
}

#[tokio::test]
async fn a_failing_endpoint_gets_a_delivery_row_and_a_retry_delivers_later() {
    let db = TestDb::new();
    let app = spawn_fast(&db, true).await;
    let receiver = Receiver::start(Answer::Error).await;
    let (id, secret) = subscribe(&app, json!({"url": receiver.url})).await;
    ticket(&app, "t1").await;
    let event = event_ids(&app, "suite_ticket").await[0];

    let row = eventually("a failed delivery row", || async {
        deliveries(&app, &id).await.into_iter().find(|d| d["attempts"].as_i64() >= Some(2))
    })
    .await;
    assert_eq!(row["event_id"], event);
    assert_eq!(row["status"], "failed");
    assert_eq!(row["last_status"], 500);
    let error = row["last_error"].as_str().unwrap();
    assert!(error.starts_with("HTTP 500: receiver broken") && error.len() <= 220, "{error}");
    assert!(row["next_attempt_at"].as_str().unwrap().ends_with('Z'));
    assert!(row["first_attempt_at"].is_string());
    let (_, view) = app.api(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(view["last_event_id"], event, "a failed delivery is handled: the cursor moved on");

    receiver.answer(Answer::Ok);
    assert_eq!(receiver.wait_delivered(1).await, [event]);
    eventually("the row goes once delivered", || async { deliveries(&app, &id).await.is_empty().then_some(()) }).await;
    receiver.with(|all| {
        assert!(all.len() >= 3, "the first attempt and at least two retries");
        for received in all {
            assert_eq!(received.event_id(), event, "the same webhook-id on every attempt");
            verify(&secret, received);
        }
    });
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_still_failing_after_24_hours_is_dead_until_replayed() {
    let db = TestDb::new();
    let app = spawn_fast(&db, true).await;
    let receiver = Receiver::start(Answer::Error).await;
    let (id, _) = subscribe(&app, json!({"url": receiver.url})).await;
    ticket(&app, "t1").await;
    eventually("a failed delivery row", || async { (!deliveries(&app, &id).await.is_empty()).then_some(()) }).await;
    db.execute("UPDATE webhook_deliveries SET first_attempt_at = first_attempt_at - 90000000");
    let dead = eventually("the delivery is dead", || async {
        deliveries(&app, &id).await.into_iter().find(|d| d["status"] == "dead")
    })
    .await;
    assert_eq!(dead["next_attempt_at"], Value::Null);
    let attempts = receiver.count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.count(), attempts, "a dead delivery is not tried again");

    receiver.answer(Answer::Ok);
    let event = dead["event_id"].as_i64().unwrap();
    let (status, body) = send(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/webhooks/{id}/replay"),
        Some(json!({"event_ids": [event]})),
    )
    .await;
    assert_eq!((status, body), (202, json!({"queued": 1})));
    assert_eq!(receiver.wait_delivered(1).await, [event]);
    eventually("the row goes once delivered", || async { deliveries(&app, &id).await.is_empty().then_some(()) }).await;
    app.stop().await;
}

#[tokio::test]
async fn a_hanging_endpoint_delays_no_other_subscription() {
    let db = TestDb::new();
    let app = spawn_fast(&db, true).await;
    let (hanging, healthy) = (Receiver::start(Answer::Hang).await, Receiver::start(Answer::Ok).await);
    subscribe(&app, json!({"url": hanging.url})).await;
    subscribe(&app, json!({"url": healthy.url})).await;
    let started = Instant::now();
    for i in 0..5 {
        ticket(&app, &format!("t{i}")).await;
    }
    healthy.wait_delivered(5).await;
    let took = started.elapsed();
    // Its loop may start after the healthy one's: called at all is what counts.
    eventually("the hanging endpoint was called", || async { (hanging.count() >= 1).then_some(()) }).await;
    assert!(took < Duration::from_secs(5), "the healthy subscription waited {took:?} (the request timeout is 10 s)");
    // Ingest goes on too: a callback is acknowledged at once.
    let started = Instant::now();
    ticket(&app, "t5").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    healthy.wait_delivered(6).await;
    app.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed_and_dropped_connections_fail() {
    let db = TestDb::new();
    let app = spawn_fast(&db, true).await;
    let (target, redirecting, dropping) = (
        Receiver::start(Answer::Ok).await,
        Receiver::start(Answer::Redirect).await,
        Receiver::start(Answer::Drop).await,
    );
    redirecting.redirect_to(&target.url);
    let (redirect_id, _) = subscribe(&app, json!({"url": redirecting.url})).await;
    let (drop_id, _) = subscribe(&app, json!({"url": dropping.url})).await;
    ticket(&app, "t1").await;

    let row = eventually("a failed redirected delivery", || async { deliveries(&app, &redirect_id).await.pop() }).await;
    assert_eq!(row["last_status"], 302);
    assert!(row["last_error"].as_str().unwrap().contains("redirect"), "{row}");
    let row = eventually("a failed dropped delivery", || async { deliveries(&app, &drop_id).await.pop() }).await;
    assert_eq!(row["last_status"], Value::Null);
    assert!(!row["last_error"].as_str().unwrap().is_empty());
    assert!(!row["last_error"].as_str().unwrap().contains("127.0.0.1"), "no URL in the error");
    eventually("retries of the redirect", || async { (redirecting.count() >= 2).then_some(()) }).await;
    assert_eq!(target.count(), 0, "the redirect was never followed");
    app.stop().await;
}

#[tokio::test]
async fn replay_re_sends_the_chosen_events_and_refuses_bad_bodies() {
    let db = TestDb::new();
    let app = spawn_fast(&db, true).await;
    let receiver = Receiver::start(Answer::Ok).await;
    let (id, secret) = subscribe(&app, json!({"url": receiver.url})).await;
    let (cancels_only, _) = subscribe(&app, json!({"url": receiver.url, "kinds": ["cancel_auth"]})).await;
    for i in 0..3 {
        ticket(&app, &format!("t{i}")).await;
    }
    receiver.wait_delivered(3).await;
    let ids = event_ids(&app, "suite_ticket").await;
    let replay_path = format!("/api/v1/webhooks/{id}/replay");

    let too_many: Vec<i64> = (1..=10_001).collect();
    for bad in [
        json!({}),
        json!({"after": ids[0]}),
        json!({"until": ids[2]}),
        json!({"after": ids[2], "until": ids[0]}),
        json!({"after": -1, "until": ids[0]}),
        json!({"after": ids[0], "until": ids[2], "event_ids": [ids[1]]}),
        json!({"event_ids": []}),
        json!({"event_ids": ["one"]}),
        json!({"event_ids": [1.5]}),
        json!({"after": "0", "until": ids[2]}),
        json!({"event_ids": too_many}),
        json!({"event_ids": [ids[0]], "kinds": ["x"]}),
    ] {
        let (status, body) = send(&app, reqwest::Method::POST, &replay_path, Some(bad.clone())).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_body")), "{bad}: {body}");
    }
    assert!(deliveries(&app, &id).await.is_empty(), "refused replays queue nothing");
    let (status, _) =
        send(&app, reqwest::Method::POST, "/api/v1/webhooks/wh_nosuch/replay", Some(json!({"event_ids": [1]}))).await;
    assert_eq!(status, 404);

    let (status, body) =
        send(&app, reqwest::Method::POST, &replay_path, Some(json!({"event_ids": [ids[1], 999_999]}))).await;
    assert_eq!((status, body), (202, json!({"queued": 1})), "only events that exist");
    let delivered = receiver.wait_delivered(4).await;
    assert_eq!(delivered[3], ids[1]);

    let range = json!({"after": ids[0], "until": ids[2]});
    let (status, body) = send(&app, reqwest::Method::POST, &replay_path, Some(range.clone())).await;
    assert_eq!((status, body), (202, json!({"queued": 2})), "after < id <= until");
    let mut again = receiver.wait_delivered(6).await.split_off(4);
    again.sort_unstable();
    assert_eq!(again, ids[1..]);
    receiver.with(|all| all[3..].iter().for_each(|received| verify(&secret, received)));

    let cancels_path = format!("/api/v1/webhooks/{cancels_only}/replay");
    let (status, body) = send(&app, reqwest::Method::POST, &cancels_path, Some(range)).await;
    assert_eq!((status, body), (202, json!({"queued": 0})), "only events matching the filters");
    app.stop().await;
}

#[tokio::test]
async fn deleting_or_disabling_a_webhook_stops_its_deliveries() {
    let db = TestDb::new();
    let app = spawn_fast(&db, true).await;
    let (deleted, paused, control) =
        (Receiver::start(Answer::Ok).await, Receiver::start(Answer::Ok).await, Receiver::start(Answer::Ok).await);
    let (deleted_id, _) = subscribe(&app, json!({"url": deleted.url})).await;
    let (paused_id, _) = subscribe(&app, json!({"url": paused.url})).await;
    subscribe(&app, json!({"url": control.url})).await;
    ticket(&app, "t1").await;
    deleted.wait_delivered(1).await;
    paused.wait_delivered(1).await;

    let (status, _) = send(&app, reqwest::Method::DELETE, &format!("/api/v1/webhooks/{deleted_id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = app.api(&format!("/api/v1/webhooks/{deleted_id}")).await;
    assert_eq!(status, 404);
    let paused_path = format!("/api/v1/webhooks/{paused_id}");
    let (status, _) = send(&app, reqwest::Method::PATCH, &paused_path, Some(json!({"enabled": false}))).await;
    assert_eq!(status, 200);
    // The deliverer re-reads the subscriptions every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ticket(&app, "t2").await;
    control.wait_delivered(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((deleted.count(), paused.count()), (1, 1), "neither gets the new event");

    let (status, _) = send(&app, reqwest::Method::PATCH, &paused_path, Some(json!({"enabled": true}))).await;
    assert_eq!(status, 200);
    paused.wait_delivered(2).await;
    assert_eq!(paused.delivered()[1], event_ids(&app, "suite_ticket").await[1], "resumed where it paused");
    app.stop().await;
}

#[tokio::test]
async fn the_command_line_adds_lists_and_removes_webhooks() {
    let db = TestDb::new();
    let receiver = Receiver::start(Answer::Ok).await;
    let env = env_for(&db);
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_wecom-provider"))
            .arg("webhooks")
            .args(args)
            .env_clear()
            .envs(&env)
            .output()
            .expect("the binary runs");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (code, out) = cli(&["add", "--url", &receiver.url, "--kind", "suite_ticket", "--suite", SUITE_ID]);
    assert_eq!(code, Some(0), "{out}");
    let field = |name: &str| {
        out.lines().find_map(|line| line.strip_prefix(name)).map(|rest| rest.trim().to_owned()).expect(name)
    };
    let (id, secret) = (field("id"), field("secret"));
    assert!(id.starts_with("wh_") && secret.starts_with("whsec_"), "{out}");
    let (code, _) = cli(&["add", "--url", "gopher://x"]);
    assert_eq!(code, Some(1), "a bad URL is refused");

    let app = spawn_fast(&db, true).await;
    let (_, list) = app.api("/api/v1/webhooks").await;
    assert_eq!(list["webhooks"][0]["id"], id.as_str());
    assert_eq!(list["webhooks"][0]["kinds"], json!(["suite_ticket"]));
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&secret));
    ticket(&app, "t1").await;
    receiver.wait_delivered(1).await;
    receiver.with(|all| verify(&secret, &all[0]));

    let (code, listed) = cli(&["list"]);
    assert_eq!(code, Some(0));
    assert!(listed.contains(&id) && listed.contains(&receiver.url) && listed.contains("enabled"), "{listed}");
    assert!(!listed.contains(&secret));
    let (code, out) = cli(&["remove", &id]);
    assert_eq!((code, out.trim()), (Some(0), format!("removed {id}").as_str()));
    let (code, _) = cli(&["remove", &id]);
    assert_eq!(code, Some(1), "removing twice fails");
    let (_, list) = app.api("/api/v1/webhooks").await;
    assert_eq!(list["webhooks"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn one_instance_delivers_a_subscription_and_hands_it_over_when_stopped() {
    let db = TestDb::new();
    let first = spawn_fast(&db, true).await;
    let receiver = Receiver::start(Answer::Ok).await;
    subscribe(&first, json!({"url": receiver.url})).await;
    ticket(&first, "t0").await;
    receiver.wait_delivered(1).await;
    // The first instance holds the lease now; the second shares its database.
    let second = spawn_fast(&db, true).await;
    for i in 1..=4 {
        ticket(&second, &format!("t{i}")).await;
    }
    receiver.wait_delivered(5).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut delivered = receiver.delivered();
    delivered.sort_unstable();
    delivered.dedup();
    assert_eq!((receiver.count(), delivered.len()), (5, 5), "each event once, by one instance");

    let stopped = Instant::now();
    first.stop().await;
    ticket(&second, "t5").await;
    receiver.wait_delivered(6).await;
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(6), "the lease was released on stop, not left to expire: {took:?}");
    second.stop().await;
}
