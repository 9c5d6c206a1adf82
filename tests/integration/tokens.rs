//! The token center against the fake WeCom: single flight within a process and
//! across instances, invalid-token recovery, retries and surfaced errors.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;

use crate::fake_wecom::{FakeWecom, Injection};
use crate::helpers::*;

fn corp_token_path(corpid: &str) -> String {
    format!("/api/v1/suites/{SUITE_ID}/corps/{corpid}/token")
}

fn access_token(body: &Value) -> String {
    body["access_token"].as_str().unwrap_or_else(|| panic!("a token in {body}")).to_owned()
}

#[tokio::test]
async fn fifty_concurrent_requests_after_expiry_make_one_upstream_call() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    // The exchange's corp token lives 302 s: within the 5-minute margin after 2 s.
    fake.set_token_lifetime(302);
    app.install(&fake, "wpCorpMany1", "Many").await;
    fake.set_token_lifetime(7200);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let suite_calls = fake.calls("service/get_suite_token");
    let corp_calls = fake.calls("service/get_corp_token");

    let path = corp_token_path("wpCorpMany1");
    let requests = (0..50).map(|_| app.api(&path));
    let answers = join_all(requests).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    let first = access_token(&answers[0].1);
    assert!(answers.iter().all(|(_, body)| access_token(body) == first), "everyone got the one new token");
    assert!(fake.is_valid_token(&first));
    assert_eq!(fake.calls("service/get_corp_token"), corp_calls + 1);
    assert!(fake.calls("service/get_suite_token") <= suite_calls + 1);
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn two_instances_on_one_database_refresh_a_token_once() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let first = spawn_against(&db, &fake, |_| {}).await;
    let second = spawn_against(&db, &fake, |_| {}).await;
    first.push_ticket(&fake).await;
    // The first upstream answer is slow, so every request arrives while it is in flight.
    fake.inject("service/get_suite_token", Injection::Delay(Duration::from_millis(400)));

    let path = format!("/api/v1/suites/{SUITE_ID}/token");
    let requests = (0..40).map(|i| if i % 2 == 0 { first.api(&path) } else { second.api(&path) });
    let answers = join_all(requests).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    let token = access_token(&answers[0].1);
    assert!(answers.iter().all(|(_, body)| access_token(body) == token));
    assert_eq!(fake.calls("service/get_suite_token"), 1);

    // The token is shared through the database: a restart reuses it too.
    first.stop().await;
    let third = spawn_against(&db, &fake, |_| {}).await;
    let (_, body) = third.api(&path).await;
    assert_eq!(access_token(&body), token);
    assert_eq!(fake.calls("service/get_suite_token"), 1);
    second.stop().await;
    third.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_token_wecom_calls_invalid_is_refreshed_once_and_the_call_retried() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    app.install(&fake, "wpCorpRetry", "Retry").await;
    let suite_calls = fake.calls("service/get_suite_token");
    assert_eq!(suite_calls, 1);
    let corp_calls = fake.calls("service/get_corp_token");

    fake.inject("service/get_corp_token", Injection::Errcode(42001));
    let (status, body) = app.api(&format!("{}?refresh=true", corp_token_path("wpCorpRetry"))).await;
    assert_eq!(status, 200, "{body}");
    assert!(fake.is_valid_token(&access_token(&body)));
    assert_eq!(fake.calls("service/get_corp_token"), corp_calls + 2, "the call and one retry");
    assert_eq!(fake.calls("service/get_suite_token"), suite_calls + 1, "one refresh of the suite token");

    // WeCom expiring every token on its side is the same story: one refresh each.
    fake.advance(7200);
    let (status, body) = app.api(&format!("{}?refresh=true", corp_token_path("wpCorpRetry"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.calls("service/get_suite_token"), suite_calls + 2);

    // A token refused twice in a row is surfaced, not retried forever.
    fake.inject("service/get_corp_token", Injection::Errcode(40014));
    fake.inject("service/get_corp_token", Injection::Errcode(40014));
    let before = fake.calls("service/get_corp_token");
    let (status, body) = app.api(&format!("{}?refresh=true", corp_token_path("wpCorpRetry"))).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "wecom_error");
    assert_eq!(body["error"]["errcode"], 40014);
    assert_eq!(fake.calls("service/get_corp_token"), before + 2);
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn busy_answers_and_server_errors_are_retried_with_backoff() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    let path = format!("/api/v1/suites/{SUITE_ID}/token");

    fake.inject("service/get_suite_token", Injection::Errcode(-1));
    fake.inject("service/get_suite_token", Injection::Errcode(-1));
    let (status, body) = app.api(&path).await;
    assert_eq!(status, 200, "{body}");
    assert!(fake.is_valid_token(&access_token(&body)));
    assert_eq!(fake.calls("service/get_suite_token"), 3);

    // Four failures exhaust the three retries: the caller hears 502, nothing is cached.
    for _ in 0..4 {
        fake.inject("service/get_provider_token", Injection::Http500);
    }
    let provider_path = format!("/api/v1/providers/{PROVIDER_CORPID}/token");
    let (status, body) = app.api(&provider_path).await;
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("wecom_unavailable")), "{body}");
    assert_eq!(fake.calls("service/get_provider_token"), 4);
    let (status, body) = app.api(&provider_path).await;
    assert_eq!(status, 200, "{body}");
    assert!(fake.is_valid_token(&access_token(&body)));
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn other_errcodes_are_surfaced_at_once_and_45009_asks_to_wait() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;

    fake.inject("service/get_suite_token", Injection::Errcode(45009));
    let response = app
        .client
        .get(app.url(&format!("/api/v1/suites/{SUITE_ID}/token")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("60"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "wecom_rate_limited");
    assert_eq!(body["error"]["errcode"], 45009);
    assert_eq!(fake.calls("service/get_suite_token"), 1, "45009 is not hammered");

    // A wrong secret is WeCom's 40001 on get_provider_token: surfaced, never retried.
    fake.add_provider(PROVIDER_CORPID, "rotated-secret");
    let (status, body) = app.api(&format!("/api/v1/providers/{PROVIDER_CORPID}/token")).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["errcode"], 40001);
    assert!(!body.to_string().contains(PROVIDER_SECRET));
    assert_eq!(fake.calls("service/get_provider_token"), 1);
    let (status, _) = app.api("/api/v1/providers/wwUnknownProvider/token").await;
    assert_eq!(status, 404);
    app.stop().await;
    fake.stop().await;
}

/// A WeCom that never answers: one refresh runs to the 20 s deadline (a 15 s attempt
/// and one retry), and the callers that waited for it share its outcome.
#[tokio::test]
async fn a_hanging_wecom_answers_within_the_deadline_and_waiting_callers_share_the_outcome() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    for _ in 0..10 {
        fake.inject("service/get_provider_token", Injection::Delay(Duration::from_secs(60)));
    }
    let path = format!("/api/v1/providers/{PROVIDER_CORPID}/token");
    let started = std::time::Instant::now();
    let callers = (0..5).map(|_| app.api(&path));
    let answers = futures_util::future::join_all(callers).await;
    let took = started.elapsed();
    for (status, body) in &answers {
        assert_eq!((*status, body["error"]["code"].as_str()), (502, Some("wecom_unavailable")), "{body}");
    }
    assert!(took < Duration::from_secs(23), "every caller answered within the deadline: {took:?}");
    assert_eq!(fake.calls("service/get_provider_token"), 2, "one refresh (an attempt and a retry) for five callers");
    app.stop().await;
    fake.stop().await;
}
