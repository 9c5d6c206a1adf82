//! The app's front door: v2 installs and the permanent_code_api setting.

use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};

use crate::fake_wecom::FakeWecom;
use crate::helpers::*;

/// The corp view without the times of the rows.
fn timeless(mut corp: Value) -> Value {
    for field in ["authorized_at", "updated_at"] {
        corp.as_object_mut().map(|o| o.remove(field));
    }
    corp
}

async fn set_permanent_code_api(app: &TestApp, api: &str) -> (u16, Value) {
    let path = format!("/api/v1/admin/suites/{}", app.seeded_suite);
    app.send(Method::PATCH, &path, Some(&json!({ "permanent_code_api": api }))).await
}

#[tokio::test]
async fn v1_and_v2_store_the_same_corp_and_send_each_auth_code_once() {
    let fake = FakeWecom::start().await;
    let (db_v2, db_v1) = (TestDb::new(), TestDb::new());
    let app_v2 = spawn_against(&db_v2, &fake, |_| {}).await;
    let app_v1 = spawn_against(&db_v1, &fake, |_| {}).await;
    assert_eq!(app_v2.suite_view(SUITE_ID).await["permanent_code_api"], "v2", "v2 is the default");
    let (status, changed) = set_permanent_code_api(&app_v1, "v1").await;
    assert_eq!((status, changed["changed"].clone()), (200, json!(["permanent_code_api"])), "{changed}");
    assert_eq!(app_v1.suite_view(SUITE_ID).await["permanent_code_api"], "v1");

    app_v2.push_ticket(&fake).await;
    app_v1.push_ticket(&fake).await;
    let through_v2 = app_v2.install(&fake, "wpSameCorp01", "Same Corp").await;
    assert_eq!(fake.calls("service/v2/get_permanent_code"), 1);
    assert_eq!(fake.calls("service/get_auth_info"), 1, "v2 is followed by get_auth_info");
    let corp_tokens = fake.calls("service/get_corp_token");
    let through_v1 = app_v1.install(&fake, "wpSameCorp01", "Same Corp").await;
    assert_eq!(fake.calls("service/get_corp_token"), corp_tokens, "v1's own corp token serves the admins");
    assert_eq!(fake.calls("service/get_permanent_code"), 1);
    assert_eq!(fake.calls("service/get_auth_info"), 1, "v1 needs no get_auth_info");
    assert!(fake.code_presentations().values().all(|times| *times == 1), "{:?}", fake.code_presentations());
    assert_eq!(fake.code_presentations().len(), 2);

    assert!(through_v2["agent_id"].as_i64().is_some(), "v2 learns the agent id: {through_v2}");
    assert_eq!(through_v2["auth_info"]["edition_info"]["agent"][0]["edition_name"], "Pro");
    assert_eq!(through_v2["auth_info"]["auth_user_info"]["userid"], "AdminUser");
    assert_eq!(through_v2["auth_info"]["auth_info"]["agent"][0]["privilege"]["level"], 1);
    assert_eq!(through_v2["auth_info"]["admins"][0]["userid"], "AdminUser");
    assert_eq!(timeless(through_v2), timeless(through_v1), "the stored corp is the same");

    // Each authorization's feed event carries the same facts.
    let authorized = |events: Vec<Value>| {
        let event = events.into_iter().find(|e| e["kind"] == "corp_authorized").expect("corp_authorized");
        let mut fields = event["fields"].clone();
        fields.as_object_mut().map(|o| o.remove("install_path"));
        fields
    };
    assert_eq!(authorized(app_v2.events().await), authorized(app_v1.events().await));
    app_v2.stop().await;
    app_v1.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_permanent_code_api_that_is_neither_v1_nor_v2_is_refused_and_changes_nothing() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let (status, body) = set_permanent_code_api(&app, "v3").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_body")), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("v2, v1")), "{body}");
    assert_eq!(app.suite_view(SUITE_ID).await["permanent_code_api"], "v2");
    app.stop().await;
}

#[tokio::test]
async fn the_command_line_and_apply_set_the_permanent_code_api() {
    let db = TestDb::new();
    // The seed creates the suite; the command line then changes it.
    TestApp::spawn(&db).await.stop().await;
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wecom-provider"))
            .args(args)
            .env_clear()
            .envs(env_for(&db))
            .output()
            .expect("runs")
    };
    let output = run(&["suites", "update", SUITE_ID, "--permanent-code-api", "v1"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = run(&["suites", "update", SUITE_ID, "--permanent-code-api", "v9"]);
    assert!(!output.status.success(), "v9 is refused");
    let app = TestApp::spawn(&db).await;
    assert_eq!(app.suite_view(SUITE_ID).await["permanent_code_api"], "v1");
    app.stop().await;

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("suites.toml");
    let declaration = format!(
        "[[suites]]\nsuite_id = \"{SUITE_ID}\"\nprovider_corpid = \"{PROVIDER_CORPID}\"\nkind = \"third_party\"\nsecret = \"{SUITE_SECRET}\"\ncallback_token = \"{SUITE_TOKEN}\"\nencoding_aes_key = \"{SUITE_AES_KEY}\"\npermanent_code_api = \"v2\"\n"
    );
    std::fs::write(&file, declaration).expect("written");
    let output = run(&["apply", &file.display().to_string()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let app = TestApp::spawn(&db).await;
    assert_eq!(app.suite_view(SUITE_ID).await["permanent_code_api"], "v2");
    app.stop().await;
}
