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

const LOGIN_SUITE: &str = "wwlogin0001";

fn sha1_hex(text: &str) -> String {
    use sha1::{Digest, Sha1};
    hex::encode(Sha1::digest(text.as_bytes()))
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    app.send(Method::POST, path, Some(&body)).await
}

/// The login suite, created at runtime with its ticket pushed.
async fn add_login_suite(app: &TestApp, fake: &FakeWecom) {
    fake.add_suite(PROVIDER_CORPID, LOGIN_SUITE, "login-suite-secret");
    let body = json!({
        "suite_id": LOGIN_SUITE, "provider_corpid": PROVIDER_CORPID, "kind": "login",
        "secret": "login-suite-secret", "callback_token": SUITE_TOKEN, "encoding_aes_key": SUITE_AES_KEY,
    });
    let (status, created) = app.send(Method::POST, "/api/v1/admin/suites", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    let ticket = fake.new_ticket(LOGIN_SUITE);
    let (status, _) = app
        .post_callback(&command_path(LOGIN_SUITE), &suite_keys(), LOGIN_SUITE, &suite_ticket_xml(LOGIN_SUITE, &ticket))
        .await;
    assert_eq!(status, 200);
    app.settled().await;
}

#[tokio::test]
async fn an_oauth_code_is_exchanged_once_and_a_second_exchange_answers_409_without_calling_wecom() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;

    let (status, url) = app
        .api(&format!("/api/v1/suites/{SUITE_ID}/oauth/authorize_url?redirect_uri=https%3A%2F%2Fapp.example%2Fh5%3Fa%3D1&scope=snsapi_privateinfo&state=abc123"))
        .await;
    assert_eq!(status, 200, "{url}");
    let url = url["url"].as_str().expect("url");
    assert!(url.starts_with("https://open.weixin.qq.com/connect/oauth2/authorize?appid=wwsuite0001&redirect_uri=https%3A%2F%2Fapp.example%2Fh5%3Fa%3D1&response_type=code&scope=snsapi_privateinfo&state=abc123#wechat_redirect"), "{url}");

    let path = format!("/api/v1/suites/{SUITE_ID}/oauth/user");
    let code = fake.new_oauth_code(SUITE_ID, "wpCorpOAuth1", "zhangsan", true);
    let (status, user) = post(&app, &path, json!({ "code": code })).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!((user["corpid"].as_str(), user["userid"].as_str()), (Some("wpCorpOAuth1"), Some("zhangsan")));
    assert_eq!(user["open_userid"], "wozhangsanOpen");
    assert_eq!(user["detail"]["gender"], "1", "privateinfo brings the detail: {user}");
    assert!(!user.to_string().contains("user-ticket"), "the user_ticket never leaves: {user}");
    assert_eq!(fake.calls("service/auth/getuserdetail3rd"), 1);

    let calls = fake.calls("service/auth/getuserinfo3rd");
    let (status, again) = post(&app, &path, json!({ "code": code })).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("oauth_code_used")), "{again}");
    assert_eq!(fake.calls("service/auth/getuserinfo3rd"), calls, "WeCom was not called again");
    assert_eq!(fake.code_uses(&code), 1);

    // Another instance on the same database refuses it too.
    let other = spawn_against(&db, &fake, |_| {}).await;
    let (status, _) = post(&other, &path, json!({ "code": code })).await;
    assert_eq!(status, 409);
    assert_eq!(fake.calls("service/auth/getuserinfo3rd"), calls);

    // A base-scope code in the legacy casing: no detail.
    fake.use_camel_case_oauth();
    let code = fake.new_oauth_code(SUITE_ID, "wpCorpOAuth1", "lisi", false);
    let (status, user) = post(&other, &path, json!({ "code": code })).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!((user["corpid"].as_str(), user["userid"].as_str()), (Some("wpCorpOAuth1"), Some("lisi")));
    assert_eq!(user["detail"], Value::Null);
    assert_eq!(fake.calls("service/auth/getuserdetail3rd"), 1);

    // An expired code: 400, and nothing to retry.
    let code = fake.new_oauth_code(SUITE_ID, "wpCorpOAuth1", "wangwu", false);
    fake.advance(301);
    let (status, body) = post(&app, &path, json!({ "code": code })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("oauth_code_invalid")), "{body}");
    app.stop().await;
    other.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn bad_oauth_input_answers_400_and_calls_nothing() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    let base = format!("/api/v1/suites/{SUITE_ID}/oauth/authorize_url");
    for (query, code) in [
        ("redirect_uri=ftp%3A%2F%2Fx.example%2F", "invalid_redirect_uri"),
        ("redirect_uri=%2Frelative", "invalid_redirect_uri"),
        ("", "invalid_redirect_uri"),
        ("redirect_uri=https%3A%2F%2Fx.example%2F&scope=snsapi_userinfo", "invalid_scope"),
        ("redirect_uri=https%3A%2F%2Fx.example%2F&state=no%20spaces", "invalid_state"),
    ] {
        let (status, body) = app.api(&format!("{base}?{query}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some(code)), "{query}: {body}");
    }
    let path = format!("/api/v1/suites/{SUITE_ID}/oauth/user");
    for body in [json!({}), json!({"code": ""}), json!({"code": "x".repeat(513)})] {
        let (status, answer) = post(&app, &path, body.clone()).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_body")), "{body}: {answer}");
    }
    let (status, _) = post(&app, "/api/v1/suites/wwnosuch/oauth/user", json!({"code": "abc"})).await;
    assert_eq!(status, 404);
    // The web-login routes want the login suite.
    let (status, body) = app
        .api(&format!("/api/v1/suites/{SUITE_ID}/web_login/authorize_url?redirect_uri=https%3A%2F%2Fx.example%2F"))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("wrong_suite_kind")), "{body}");
    assert_eq!(fake.calls("service/auth/getuserinfo3rd"), 0);
    assert_eq!(db.count("SELECT COUNT(*) FROM login_codes"), 0, "nothing stored");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn web_login_uses_the_login_suite_token_and_admin_login_the_provider_token() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    add_login_suite(&app, &fake).await;

    let (status, url) = app
        .api(&format!("/api/v1/suites/{LOGIN_SUITE}/web_login/authorize_url?redirect_uri=https%3A%2F%2Fsite.example%2Flogin&state=s1"))
        .await;
    assert_eq!(status, 200, "{url}");
    assert_eq!(
        url["url"],
        "https://login.work.weixin.qq.com/wwlogin/sso/login?login_type=ServiceApp&appid=wwlogin0001&redirect_uri=https%3A%2F%2Fsite.example%2Flogin&state=s1"
    );
    // A code of the login suite: only that suite's token exchanges it at the fake.
    let path = format!("/api/v1/suites/{LOGIN_SUITE}/web_login/user");
    let code = fake.new_oauth_code(LOGIN_SUITE, "wpCorpWeb01", "webuser", false);
    let (status, user) = post(&app, &path, json!({ "code": code })).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!((user["corpid"].as_str(), user["userid"].as_str()), (Some("wpCorpWeb01"), Some("webuser")));
    let (status, again) = post(&app, &path, json!({ "code": code })).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("oauth_code_used")));
    assert_eq!(fake.code_uses(&code), 1);

    let path = format!("/api/v1/providers/{PROVIDER_CORPID}/admin_login");
    let code = fake.new_admin_login_code(PROVIDER_CORPID, "wpCorpAdmin1", "boss");
    let (status, login) = post(&app, &path, json!({ "auth_code": code })).await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["usertype"], 1);
    assert_eq!(login["user"]["userid"], "boss");
    assert_eq!(login["corp"]["corpid"], "wpCorpAdmin1");
    assert_eq!(login["agents"][0]["auth_type"], 1);
    let (status, again) = post(&app, &path, json!({ "auth_code": code })).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("oauth_code_used")));
    assert_eq!(fake.calls("service/get_login_info"), 1);
    let (status, _) = post(&app, "/api/v1/providers/wxnobody/admin_login", json!({ "auth_code": "abc" })).await;
    assert_eq!(status, 404);
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn jsapi_signatures_verify_with_the_tickets_wecom_issued_and_reuse_them() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    let corp = app.install(&fake, "wpCorpJs001", "JS Corp").await;
    let agent_id = corp["agent_id"].as_i64().expect("agent id");

    let path = format!("/api/v1/suites/{SUITE_ID}/corps/wpCorpJs001/jsapi_signatures");
    let page = "https://app.example/h5/index.html?from=menu";
    let (status, signed) = post(&app, &path, json!({ "url": format!("{page}#/home") })).await;
    assert_eq!(status, 200, "{signed}");
    let jsapi = fake.newest_ticket("jsapi", SUITE_ID, "wpCorpJs001").expect("a jsapi ticket");
    let agent = fake.newest_ticket("agent_config", SUITE_ID, "wpCorpJs001").expect("an agent ticket");
    let config = &signed["config"];
    assert_eq!(config["appId"], "wpCorpJs001");
    let expected = |ticket: &str, part: &Value| {
        sha1_hex(&format!(
            "jsapi_ticket={ticket}&noncestr={}&timestamp={}&url={page}",
            part["nonceStr"].as_str().expect("nonce"),
            part["timestamp"].as_i64().expect("timestamp")
        ))
    };
    assert_eq!(config["signature"].as_str(), Some(expected(&jsapi, config).as_str()), "{signed}");
    let agent_config = &signed["agentConfig"];
    assert_eq!(
        (agent_config["corpid"].as_str(), agent_config["agentid"].as_i64()),
        (Some("wpCorpJs001"), Some(agent_id))
    );
    assert_eq!(agent_config["signature"].as_str(), Some(expected(&agent, agent_config).as_str()));
    assert!(!signed.to_string().contains("ticket-"), "tickets are never shown: {signed}");

    // Cached: another instance signs with the same tickets, no fetch.
    let other = spawn_against(&db, &fake, |_| {}).await;
    let (status, _) = post(&other, &path, json!({ "url": page })).await;
    assert_eq!(status, 200);
    assert_eq!((fake.calls("get_jsapi_ticket"), fake.calls("ticket/get")), (1, 1));
    assert!(db.raw_contents().windows(jsapi.len()).all(|w| w != jsapi.as_bytes()), "tickets are sealed at rest");

    for url in ["ftp://app.example/", "not a url", "/relative"] {
        let (status, body) = post(&app, &path, json!({ "url": url })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_url")), "{url}: {body}");
    }
    app.command(&auth_event_xml(SUITE_ID, "cancel_auth", "wpCorpJs001", 1_700_000_300)).await;
    app.settled().await;
    let (status, body) = post(&app, &path, json!({ "url": page })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("corp_not_active")), "{body}");
    app.stop().await;
    other.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn ticket_fetches_stop_at_wecoms_hourly_limit_across_instances_and_42012_retries_once() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    let other = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    app.install(&fake, "wpCorpLimit1", "Limit Corp").await;
    let path = format!("/api/v1/suites/{SUITE_ID}/corps/wpCorpLimit1/jsapi_signatures");

    // Tickets that live under the 5-minute margin are fetched for every signature.
    fake.set_ticket_lifetime(60);
    // 42012 on the first fetch: the corp token is dropped and the fetch retried once.
    fake.inject("get_jsapi_ticket", crate::fake_wecom::Injection::Errcode(42012));
    let corp_tokens = fake.calls("service/get_corp_token");
    let (status, body) = post(&app, &path, json!({ "url": "https://app.example/" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.calls("get_jsapi_ticket"), 2, "the fetch and one retry");
    assert_eq!(fake.calls("service/get_corp_token"), corp_tokens + 1, "a new corp token for the retry");

    // The app's 100 an hour run out, shared by both instances, and WeCom is never hit past it.
    let mut answers = Vec::new();
    for round in 0..105 {
        let instance = if round % 2 == 0 { &app } else { &other };
        answers.push(post(instance, &path, json!({ "url": "https://app.example/" })).await);
    }
    let limited = answers
        .iter()
        .position(|(status, _)| *status == 429)
        .unwrap_or_else(|| panic!("the limit is reached: {} fetches, {:?}", fake.calls("ticket/get"), answers.last()));
    let (_, refusal) = &answers[limited];
    assert_eq!(refusal["error"]["code"], "ticket_rate_limited", "{refusal}");
    assert!(refusal["error"]["message"].as_str().is_some_and(|m| m.contains("100")), "{refusal}");
    assert_eq!(limited, 99, "one fetch before and 99 here make 100");
    assert!(answers[..limited].iter().all(|(status, _)| *status == 200));
    assert!(answers[limited..].iter().all(|(status, _)| *status == 429));
    assert_eq!(fake.calls("ticket/get"), 100, "exactly WeCom's hourly allowance");
    assert_eq!(fake.ticket_limit_hits(), 0, "WeCom never refused a fetch");
    app.stop().await;
    other.stop().await;
    fake.stop().await;
}

fn data_event_xml(corpid: &str, event: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{corpid}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1700000400</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event><AgentID>1000001</AgentID></xml>"
    )
}

fn grant_xml(info_type: &str, corpid: &str, auth_type: &str, timestamp: i64) -> String {
    format!(
        "<xml><SuiteId><![CDATA[{SUITE_ID}]]></SuiteId><InfoType><![CDATA[{info_type}]]></InfoType><TimeStamp>{timestamp}</TimeStamp><AuthCorpId><![CDATA[{corpid}]]></AuthCorpId><AuthType><![CDATA[{auth_type}]]></AuthType></xml>"
    )
}

#[tokio::test]
async fn app_events_reach_their_effects_and_the_corp_view_shows_what_was_granted() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    app.install(&fake, "wpCorpEvt01", "Events Corp").await;

    // change_app_admin arrives on the data URL (ReceiveId = the corp).
    fake.set_admins(json!([{"userid": "NewAdmin", "open_userid": "woNewAdmin", "auth_type": 1}]));
    let data_path = format!("/callback/{SUITE_ID}/data");
    let (status, _) = app
        .post_callback(&data_path, &suite_keys(), "wpCorpEvt01", &data_event_xml("wpCorpEvt01", "change_app_admin"))
        .await;
    assert_eq!(status, 200);
    for (info_type, auth_type, at) in [
        ("corp_arch_auth", "", 1_700_000_501),
        ("approve_special_auth", "customer_acquisition", 1_700_000_502),
        ("auth_data_permission", "data_zone_chat", 1_700_000_503),
        ("expire_remind_data_permission", "data_zone_chat", 1_700_000_504),
        ("cancel_special_auth", "customer_acquisition", 1_700_000_505),
    ] {
        app.command(&grant_xml(info_type, "wpCorpEvt01", auth_type, at)).await;
        // One at a time: each changes the same stored corp.
        app.settled().await;
    }
    let events = app.settled().await;
    assert!(events.iter().all(|e| e["status"] == "done"), "{events:?}");
    let corp = app.corp("wpCorpEvt01").await;
    assert_eq!(corp["auth_info"]["admins"][0]["userid"], "NewAdmin", "{corp}");
    let grants = &corp["auth_info"]["grants"];
    assert_eq!(grants["corp_architecture"], true, "{grants}");
    assert_eq!(grants["special_auth"]["customer_acquisition"], false);
    assert_eq!(grants["data_permissions"]["data_zone_chat"]["status"], "expiring");
    let kinds = |kind: &str| events.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(kinds("corp_admins_changed"), 1);
    assert_eq!(kinds("corp_grants_changed"), 5);

    // A change_auth keeps what it does not fetch.
    app.command(&auth_event_xml(SUITE_ID, "change_auth", "wpCorpEvt01", 1_700_000_600)).await;
    app.settled().await;
    let corp = app.corp("wpCorpEvt01").await;
    assert_eq!(corp["auth_info"]["grants"]["corp_architecture"], true, "{corp}");
    assert_eq!(corp["auth_info"]["admins"][0]["userid"], "NewAdmin");

    // Unknown kinds stay stored and visible.
    app.command(&grant_xml("some_future_event", "wpCorpEvt01", "x", 1_700_000_700)).await;
    let events = app.settled().await;
    assert!(events.iter().any(|e| e["kind"] == "some_future_event" && e["status"] == "done"));
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_registration_on_the_provider_url_is_stored_with_its_token_sealed_and_announced() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let path = format!("/callback/provider/{PROVIDER_CORPID}");
    let xml = format!(
        "<xml><ServiceCorpId><![CDATA[{PROVIDER_CORPID}]]></ServiceCorpId><InfoType><![CDATA[register_corp]]></InfoType><TimeStamp>1502682179</TimeStamp><RegisterCode><![CDATA[pIKi3wRPNWCGF-pyP-YU5KWjDDD]]></RegisterCode><AuthCorpId><![CDATA[wwRegistered1]]></AuthCorpId><ContactSync><AccessToken><![CDATA[contact-sync-token-secret-42]]></AccessToken><ExpiresIn><![CDATA[1800]]></ExpiresIn></ContactSync><AuthUserInfo><UserId><![CDATA[zhangshan]]></UserId></AuthUserInfo><State><![CDATA[state1]]></State><TemplateId><![CDATA[tpl01]]></TemplateId></xml>"
    );
    let (status, _) = app.post_callback(&path, &provider_keys(), PROVIDER_CORPID, &xml).await;
    assert_eq!(status, 200);
    let events = app.settled().await;
    let registered: Vec<&Value> = events.iter().filter(|e| e["kind"] == "corp_registered").collect();
    assert_eq!(registered.len(), 1, "{events:?}");
    let fields = &registered[0]["fields"];
    assert_eq!((fields["corpid"].as_str(), fields["via"].as_str()), (Some("wwRegistered1"), Some("register_corp")));
    assert_eq!((fields["userid"].as_str(), fields["has_contact_sync"].as_bool()), (Some("zhangshan"), Some(true)));
    assert_eq!(registered[0]["suite_id"], Value::Null);
    assert!(events.iter().all(|e| e["status"] == "done"));
    assert_eq!(db.count("SELECT COUNT(*) FROM registrations WHERE corpid = 'wwRegistered1'"), 1);
    let raw = db.raw_contents();
    assert!(raw.windows(28).all(|w| w != b"contact-sync-token-secret-42"), "the token is sealed at rest");
    assert!(!events.iter().any(|e| e.to_string().contains("contact-sync-token-secret-42")), "never shown");

    // The same delivery again stores nothing new.
    let (status, _) = app.post_callback(&path, &provider_keys(), PROVIDER_CORPID, &xml).await;
    assert_eq!(status, 200);
    let events = app.settled().await;
    assert_eq!(events.iter().filter(|e| e["kind"] == "corp_registered").count(), 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM registrations"), 1);
    app.stop().await;
}
