//! The authorization lifecycle against the fake WeCom: install (callback and
//! redirect), change, cancel, customized-app secrets, and what the API shows.

use std::time::Duration;

use serde_json::Value;

use crate::fake_wecom::{FakeWecom, Injection};
use crate::helpers::*;

const DK_SUITE: &str = "dk1a2b3c4d5e6f7a8b";

/// The app with its seeded suite a customized-app template (代开发).
async fn spawn_customized(db: &TestDb, fake: &FakeWecom) -> TestApp {
    spawn_against(db, fake, |env| {
        env.insert("WECOM_SUITE_ID".into(), DK_SUITE.into());
        env.insert("WECOM_SUITE_KIND".into(), "customized_template".into());
    })
    .await
}

fn corp_path(app: &TestApp, corpid: &str) -> String {
    format!("/api/v1/suites/{}/corps/{corpid}", app.seeded_suite)
}

#[tokio::test]
async fn a_third_party_suite_lives_through_install_change_and_cancel() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;

    let corp = app.install(&fake, "wpCorpA0001", "Corp A").await;
    assert_eq!(corp["status"], "active");
    assert_eq!(corp["corp_name"], "Corp A");
    assert!(corp["agent_id"].as_i64().is_some_and(|id| id > 1_000_000), "{corp}");
    assert_eq!(corp["auth_info"]["auth_corp_info"]["corpid"], "wpCorpA0001");
    assert_eq!(corp["auth_info"]["edition_info"]["agent"][0]["edition_name"], "Pro");
    assert_eq!(corp["auth_info"]["admins"][0]["userid"], "AdminUser");
    assert_eq!(corp["auth_error"], Value::Null);
    assert!(!corp.to_string().contains("permanent-code"), "the permanent code is never shown: {corp}");
    assert_eq!(fake.calls("service/v2/get_permanent_code"), 1);

    // The corp token fetched at install (for the admins) is kept: handing it out costs no call.
    assert_eq!(fake.calls("service/get_corp_token"), 1);
    let (status, token) = app.api(&format!("{}/token", corp_path(&app, "wpCorpA0001"))).await;
    assert_eq!(status, 200, "{token}");
    let first = token["access_token"].as_str().expect("token").to_owned();
    assert!(fake.is_valid_token(&first));
    assert!(token["expires_at"].as_str().is_some_and(|at| at.ends_with('Z')));
    assert_eq!(fake.calls("service/get_corp_token"), 1);

    let (status, token) = app.api(&format!("{}/token?refresh=true", corp_path(&app, "wpCorpA0001"))).await;
    assert_eq!(status, 200);
    assert_ne!(token["access_token"], first.as_str());
    assert!(fake.is_valid_token(token["access_token"].as_str().expect("token")));
    assert_eq!(fake.calls("service/get_corp_token"), 2);

    fake.rename_corp("wpCorpA0001", "Corp A Renamed");
    app.command(&auth_event_xml(&app.seeded_suite, "change_auth", "wpCorpA0001", 1_700_000_200)).await;
    eventually("the new name is stored", || async {
        let (_, corp) = app.api(&corp_path(&app, "wpCorpA0001")).await;
        (corp["corp_name"] == "Corp A Renamed").then_some(())
    })
    .await;
    assert_eq!(fake.calls("service/get_auth_info"), 2, "one after the v2 install, one for change_auth");
    assert_eq!(fake.calls("agent/get"), 0, "only a 代开发 app's state is asked");

    app.command(&auth_event_xml(&app.seeded_suite, "cancel_auth", "wpCorpA0001", 1_700_000_300)).await;
    eventually("the corp is cancelled", || async {
        let (_, corp) = app.api(&corp_path(&app, "wpCorpA0001")).await;
        (corp["status"] == "cancelled").then_some(())
    })
    .await;
    let (status, body) = app.api(&format!("{}/token", corp_path(&app, "wpCorpA0001"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("corp_not_active")));
    let (_, list) = app.api(&format!("/api/v1/suites/{}/corps", app.seeded_suite)).await;
    assert_eq!(list["corps"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["corps"][0]["status"], "cancelled");
    assert!(app.settled().await.iter().all(|event| event["status"] == "done"));

    // Installing again brings the corp back with a new permanent code.
    app.install(&fake, "wpCorpA0001", "Corp A Again").await;
    let corp = eventually("the corp is active again", || async {
        let (_, corp) = app.api(&corp_path(&app, "wpCorpA0001")).await;
        (corp["status"] == "active").then_some(corp)
    })
    .await;
    assert_eq!(corp["corp_name"], "Corp A Again");
    let (status, _) = app.api(&format!("{}/token", corp_path(&app, "wpCorpA0001"))).await;
    assert_eq!(status, 200);

    // Every change appended its derived event, naming the corp; create_auth names it too.
    let events = app.settled().await;
    let kinds: Vec<&str> =
        events.iter().filter_map(|e| e["kind"].as_str()).filter(|k| k.starts_with("corp_")).collect();
    assert_eq!(kinds, ["corp_authorized", "corp_auth_changed", "corp_cancelled", "corp_authorized"], "{events:?}");
    for event in events.iter().filter(|e| e["kind"] != "suite_ticket") {
        assert_eq!(event["corpid"], "wpCorpA0001", "{event}");
        assert_eq!(event["suite_id"], app.seeded_suite.as_str(), "{event}");
    }
    let authorized = events.iter().find(|e| e["kind"] == "corp_authorized").expect("corp_authorized");
    let fields = &authorized["fields"];
    assert_eq!(fields["corp_name"], "Corp A");
    assert_eq!(fields["install_path"], "callback");
    assert!(fields["agent_id"].as_i64().is_some_and(|id| id > 1_000_000), "{fields}");
    assert_eq!(fields["auth_mode"], 0);
    assert_eq!(fields["edition"]["edition_name"], "Pro");
    let changed = events.iter().find(|e| e["kind"] == "corp_auth_changed").expect("corp_auth_changed");
    assert_eq!(changed["fields"]["corp_name"], "Corp A Renamed");
    assert!(!events.iter().any(|e| e.to_string().contains("permanent-code")), "no permanent code in the feed");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_customized_app_gets_corp_tokens_from_gettoken_and_survives_a_secret_reset() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_customized(&db, &fake).await;
    app.push_ticket(&fake).await;
    let corp = app.install(&fake, "wpCorpDk001", "Corp Dk").await;
    assert_eq!(corp["status"], "active");
    assert_eq!(corp["auth_info"]["auth_info"]["agent"][0]["is_customized_app"], true);

    let token_path = format!("{}/token", corp_path(&app, "wpCorpDk001"));
    let (status, token) = app.api(&token_path).await;
    assert_eq!(status, 200, "{token}");
    let old_token = token["access_token"].as_str().expect("token").to_owned();
    assert!(fake.is_valid_token(&old_token));
    assert_eq!(fake.calls("service/get_corp_token"), 0, "customized apps never use get_corp_token");
    let gettoken_calls = fake.calls("gettoken");
    assert!(gettoken_calls >= 1);

    // The provider pressed 重新获取secret: the old permanent code stops working.
    let code = fake.new_auth_code(DK_SUITE, "wpCorpDk001", "Corp Dk");
    app.command(&reset_permanent_code_xml(DK_SUITE, &code)).await;
    let events = app.settled().await;
    assert!(events.iter().all(|event| event["status"] == "done"));
    assert_eq!(fake.calls("service/v2/get_permanent_code"), 2);
    let reset: Vec<&Value> = events.iter().filter(|e| e["kind"] == "corp_permanent_code_reset").collect();
    assert_eq!(reset.len(), 1, "{events:?}");
    assert_eq!(reset[0]["corpid"], "wpCorpDk001");
    let reset_callback = events.iter().find(|e| e["kind"] == "reset_permanent_code").expect("stored");
    assert_eq!(reset_callback["corpid"], "wpCorpDk001", "the exchange names the corp");

    // The old token was dropped; the new one comes from the new secret (the fake
    // refuses the replaced permanent code with 40001).
    let (status, token) = app.api(&format!("{token_path}?refresh=true")).await;
    assert_eq!(status, 200, "{token}");
    assert_ne!(token["access_token"], old_token.as_str());
    assert!(fake.is_valid_token(token["access_token"].as_str().expect("token")));
    assert!(fake.calls("gettoken") > gettoken_calls);
    assert_eq!(fake.calls("service/get_corp_token"), 0);
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn the_same_auth_code_delivered_twice_is_exchanged_once() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    let code = fake.new_auth_code(&app.seeded_suite, "wpCorpTwice", "Twice");
    // Different plaintexts (WeCom re-sent with a new TimeStamp), so both are stored.
    app.command(&create_auth_xml(&app.seeded_suite, &code, 1_700_000_100)).await;
    app.command(&create_auth_xml(&app.seeded_suite, &code, 1_700_000_101)).await;
    let events = app.settled().await;
    let creates: Vec<&Value> = events.iter().filter(|e| e["kind"] == "create_auth").collect();
    assert_eq!(creates.len(), 2);
    assert!(creates.iter().all(|e| e["status"] == "done"), "{creates:?}");
    assert!(creates.iter().all(|e| e["fields"]["AuthCode"] == "[redacted]"));
    assert_eq!(fake.calls("service/v2/get_permanent_code"), 1);
    assert_eq!(app.corp("wpCorpTwice").await["status"], "active");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn change_auth_records_whether_a_customized_app_is_enabled_with_an_event_per_switch() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_customized(&db, &fake).await;
    app.push_ticket(&fake).await;
    app.install(&fake, "wpCorpDkSw1", "Corp Switch").await;
    let change = |timestamp| auth_event_xml(DK_SUITE, "change_auth", "wpCorpDkSw1", timestamp);
    let switches = |events: &[Value]| -> Vec<String> {
        let kinds = events.iter().map(|e| e["kind"].as_str().unwrap_or_default().to_owned());
        kinds.filter(|kind| kind.starts_with("customized_app_")).collect()
    };

    // A change of the visible range: enabled, as it was; nothing to act on.
    app.command(&change(1_700_000_700)).await;
    let events = app.settled().await;
    assert_eq!(app.corp("wpCorpDkSw1").await["auth_info"]["app_state"]["enabled"], true);
    assert!(switches(&events).is_empty(), "{events:?}");
    let changed = events.iter().rev().find(|e| e["kind"] == "corp_auth_changed").expect("corp_auth_changed");
    assert_eq!(changed["fields"]["app_enabled"], true);

    // The corp disables the app, then enables it again: one event for each switch.
    fake.close_app("wpCorpDkSw1", true);
    app.command(&change(1_700_000_701)).await;
    let events = app.settled().await;
    let state = app.corp("wpCorpDkSw1").await["auth_info"]["app_state"].clone();
    assert_eq!(state["enabled"], false, "{state}");
    assert!(state["since"].is_string());
    assert_eq!(switches(&events), ["customized_app_disabled"]);
    app.command(&change(1_700_000_702)).await;
    assert_eq!(switches(&app.settled().await), ["customized_app_disabled"], "still disabled: no new event");
    fake.close_app("wpCorpDkSw1", false);
    app.command(&change(1_700_000_703)).await;
    let events = app.settled().await;
    assert_eq!(switches(&events), ["customized_app_disabled", "customized_app_enabled"]);
    assert_eq!(app.corp("wpCorpDkSw1").await["auth_info"]["app_state"]["enabled"], true);
    assert!(events.iter().all(|e| e["status"] == "done"), "{events:?}");
    assert_eq!(fake.calls("agent/get"), 4, "one agent/get per change_auth");
    app.stop().await;
    fake.stop().await;
}

/// Starts an install in a browser: the page, its WeCom link and the state cookie.
async fn start_install(app: &TestApp) -> (String, String, Url) {
    let response =
        app.client.get(app.url(&format!("/install/{}", app.seeded_suite))).send().await.expect("install page");
    assert_eq!(response.status().as_u16(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .expect("the install page sets its state cookie")
        .to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let cookie = cookie.split(';').next().expect("name=value").to_owned();
    let html = response.text().await.expect("html");
    let link = Url::parse(&link_of(&html, "install").expect("install link")).expect("the link is a URL");
    let state = link.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).expect("state");
    (cookie, state, link)
}

use url::Url;

/// The unescaped `href` of the element with `id` in `html`.
fn link_of(html: &str, id: &str) -> Option<String> {
    let href = html.split(&format!("id=\"{id}\" href=\"")).nth(1)?.split('"').next()?;
    Some(quick_xml::escape::unescape(href).expect("an HTML-escaped attribute").into_owned())
}

async fn complete(app: &TestApp, cookie: Option<&str>, auth_code: &str, state: &str) -> (u16, String) {
    let mut request = app
        .client
        .get(app.url(&format!("/install/{}/complete", app.seeded_suite)))
        .query(&[("auth_code", auth_code), ("state", state)]);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("complete");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn the_install_page_links_to_wecom_and_the_redirect_completes_the_install() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |env| {
        env.insert("PUBLIC_BASE_URL".into(), "https://apps.example.com/".into());
        env.insert("WECOM_INSTALL_AUTH_TYPE".into(), "1".into());
    })
    .await;
    app.push_ticket(&fake).await;
    let listing = serde_json::json!({
        "name": "报销助手 <Expenses>",
        "description": "Claims & approvals for every member.",
        "logo_url": "https://cdn.example.com/logo.png",
    });
    let suite_path = format!("/api/v1/admin/suites/{}", app.seeded_suite);
    let (status, body) = app.send(reqwest::Method::PATCH, &suite_path, Some(&listing)).await;
    assert_eq!(status, 200, "{body}");
    let (_, view) = app.api(&suite_path).await;
    assert_eq!((&view["description"], &view["logo_url"]), (&listing["description"], &listing["logo_url"]));
    let page = app.client.get(app.url(&format!("/install/{}", app.seeded_suite))).send().await.expect("page");
    let page = page.text().await.expect("html");
    assert!(page.contains("安装 报销助手 &lt;Expenses&gt;"), "the app's name, escaped: {page}");
    assert!(page.contains("Claims &amp; approvals for every member."), "{page}");
    assert!(page.contains("cdn.example.com"), "the logo: {page}");
    let english =
        app.client.get(app.url(&format!("/install/{}?lang=en", app.seeded_suite))).send().await.expect("page");
    assert!(english.headers().get_all("set-cookie").iter().any(|c| c.to_str().is_ok_and(|c| c.starts_with("lang=en"))));
    assert!(english.text().await.expect("html").contains("Install 报销助手 &lt;Expenses&gt;"));
    let (status, _) = app.send(reqwest::Method::PATCH, &suite_path, Some(&serde_json::json!({"logo_url": ""}))).await;
    assert_eq!(status, 200);
    assert_eq!(app.api(&suite_path).await.1["logo_url"], Value::Null, "an empty logo_url removes the logo");
    let (cookie, state, link) = start_install(&app).await;
    assert_eq!(link.host_str(), Some("open.work.weixin.qq.com"));
    let param = |name: &str| link.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    assert_eq!(param("suite_id").as_deref(), Some(app.seeded_suite.as_str()));
    assert!(param("pre_auth_code").is_some_and(|code| code.starts_with("preauth-")));
    let expected_redirect = format!("https://apps.example.com/install/{}/complete", app.seeded_suite);
    assert_eq!(param("redirect_uri"), Some(expected_redirect));
    assert_eq!(fake.session_auth_types(), vec![1], "test installs are marked with auth_type 1");

    // Without the cookie, or with another state, nothing is exchanged.
    let code = fake.new_auth_code(&app.seeded_suite, "wpCorpWeb01", "Web Corp");
    let (status, page) = complete(&app, None, &code, &state).await;
    assert_eq!(status, 400, "{page}");
    let (status, _) = complete(&app, Some(&cookie), &code, "forged-state").await;
    assert_eq!(status, 400);
    assert_eq!(fake.calls("service/v2/get_permanent_code"), 0);

    let (status, page) = complete(&app, Some(&cookie), &code, &state).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Web Corp"), "{page}");
    assert_eq!(app.corp("wpCorpWeb01").await["status"], "active");
    let (_, page) = app.api("/api/v1/events?kind=corp_authorized").await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "the install page appends its event: {page}");
    assert_eq!(page["events"][0]["corpid"], "wpCorpWeb01");
    assert_eq!(page["events"][0]["fields"]["install_path"], "install_page");

    // The state is single-use.
    let (status, _) = complete(&app, Some(&cookie), &code, &state).await;
    assert_eq!(status, 400);

    // An expired or used auth code shows the expiry page, in Chinese by default,
    // with a way to start again.
    let (cookie, state, again) = start_install(&app).await;
    assert_eq!(
        again.query_pairs().find(|(k, _)| k == "pre_auth_code"),
        link.query_pairs().find(|(k, _)| k == "pre_auth_code")
    );
    assert_eq!(fake.calls("service/get_pre_auth_code"), 1, "a second view reuses the pre_auth_code");
    assert_eq!(fake.session_auth_types(), vec![1], "and marks it once");
    let (status, page) = complete(&app, Some(&cookie), "authcode-never-issued", &state).await;
    assert_eq!(status, 400);
    assert!(page.contains("授权已失效"), "{page}");
    assert_eq!(link_of(&page, "again"), Some(format!("/install/{}", app.seeded_suite)), "{page}");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn install_error_pages_say_what_to_do_in_the_visitors_language() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    let page = |path: String, language: &'static str| {
        let request = app.client.get(app.url(&path)).header("accept-language", language);
        async move {
            let response = request.send().await.expect("page");
            (response.status().as_u16(), response.text().await.expect("html"))
        }
    };
    // No ticket yet: not ready, try again (the same page).
    let install = format!("/install/{}", app.seeded_suite);
    let (status, html) = page(install.clone(), "zh-CN,zh;q=0.9").await;
    assert_eq!(status, 503);
    assert!(html.contains("应用尚未就绪") && html.contains("稍后重试"), "{html}");
    assert_eq!(link_of(&html, "again").as_deref(), Some(install.as_str()));
    let (status, html) = page(install.clone(), "en-GB,en;q=0.8").await;
    assert_eq!(status, 503);
    assert!(html.contains("Not ready yet") && html.contains("lang=\"en\""), "{html}");
    assert_eq!(fake.calls("service/get_pre_auth_code"), 0);
    // An app that is not ours: no way to start again here.
    let (status, html) = page("/install/wwnotoursuite".into(), "en").await;
    assert_eq!(status, 404);
    assert!(html.contains("Unknown app") && link_of(&html, "again").is_none(), "{html}");
    // A redirect without the install's state.
    let (status, html) = page(format!("{install}/complete?auth_code=x&state=y"), "en").await;
    assert_eq!(status, 400);
    assert!(html.contains("This installation link is not valid"), "{html}");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn the_install_page_fetches_a_new_pre_auth_code_when_two_minutes_are_left() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    let (_, _, first) = start_install(&app).await;
    let code = |link: &Url| link.query_pairs().find(|(k, _)| k == "pre_auth_code").map(|(_, v)| v.into_owned());
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    db.execute(&format!("UPDATE tokens SET expires_at = {} WHERE scope = 'pre_auth_code'", now_ms + 125_000));
    // Past the one second a token is trusted from memory, so the database is read.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, _, still) = start_install(&app).await;
    assert_eq!(code(&still), code(&first), "2 min 5 s left: still handed out");
    db.execute(&format!("UPDATE tokens SET expires_at = {} WHERE scope = 'pre_auth_code'", now_ms + 115_000));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, _, fresh) = start_install(&app).await;
    assert_ne!(code(&fresh), code(&first), "less than 2 minutes left: a new one");
    assert_eq!(fake.calls("service/get_pre_auth_code"), 2);
    assert_eq!(fake.session_auth_types(), Vec::<i64>::new(), "not a test install: no set_session_info");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_create_auth_racing_the_install_redirect_makes_one_exchange() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    let (cookie, state, _) = start_install(&app).await;
    let code = fake.new_auth_code(&app.seeded_suite, "wpCorpRace1", "Race Corp");
    // The first exchange is slow, so the second path arrives while it runs.
    fake.inject("service/v2/get_permanent_code", Injection::Delay(Duration::from_millis(700)));

    let create_auth = create_auth_xml(&app.seeded_suite, &code, 1_700_000_100);
    let callback = app.command(&create_auth);
    let redirect = complete(&app, Some(&cookie), &code, &state);
    let ((), (status, page)) = tokio::join!(callback, redirect);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Race Corp"));
    let events = app.settled().await;
    assert!(events.iter().all(|e| e["status"] == "done"), "{events:?}");
    assert_eq!(fake.calls("service/v2/get_permanent_code"), 1);
    assert_eq!(app.corp("wpCorpRace1").await["status"], "active");
    let authorized: Vec<&Value> = events.iter().filter(|e| e["kind"] == "corp_authorized").collect();
    assert_eq!(authorized.len(), 1, "one install, one event: {events:?}");
    assert_eq!(authorized[0]["corpid"], "wpCorpRace1");
    let create_auth = events.iter().find(|e| e["kind"] == "create_auth").expect("create_auth stored");
    assert_eq!(create_auth["corpid"], "wpCorpRace1", "the exchange names create_auth's corp");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn without_a_fresh_ticket_suite_work_answers_503_no_suite_ticket() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    let (status, body) = app.api(&format!("/api/v1/suites/{}/token", app.seeded_suite)).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "no_suite_ticket");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("刷新ticket")), "{body}");
    assert_eq!(fake.calls("service/get_suite_token"), 0, "nothing is asked without a ticket");

    let response = app.client.get(app.url(&format!("/install/{}", app.seeded_suite))).send().await.expect("page");
    assert_eq!(response.status().as_u16(), 503);

    // A ticket WeCom no longer knows (40085) is named as such, with its age.
    let (status, _) = app
        .post_callback(
            &command_path(&app.seeded_suite),
            &suite_keys(),
            &app.seeded_suite,
            &suite_ticket_xml(&app.seeded_suite, "stale-ticket"),
        )
        .await;
    assert_eq!(status, 200);
    app.settled().await;
    let (status, body) = app.api(&format!("/api/v1/suites/{}/token", app.seeded_suite)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("suite_ticket_rejected")), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("40085") && message.contains(" s ago"), "{message}");
    assert!(!message.contains("stale-ticket"), "the ticket itself is never shown: {message}");
    assert_eq!(fake.calls("service/get_suite_token"), 1);
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_rejected_permanent_code_marks_the_corp_and_is_not_retried() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    app.install(&fake, "wpCorpGone1", "Gone Corp").await;
    fake.revoke("wpCorpGone1");

    let token_path = format!("{}/token?refresh=true", corp_path(&app, "wpCorpGone1"));
    let (status, body) = app.api(&token_path).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("permanent_code_rejected")), "{body}");
    let corp = app.corp("wpCorpGone1").await;
    assert_eq!(corp["auth_error"], "errcode 40084");
    let (_, rejected) = app.api("/api/v1/events?kind=corp_auth_rejected&wait=5").await;
    assert_eq!(rejected["events"].as_array().map(Vec::len), Some(1), "{rejected}");
    assert_eq!(rejected["events"][0]["corpid"], "wpCorpGone1");
    let calls = fake.calls("service/get_corp_token");
    let (status, _) = app.api(&token_path).await;
    assert_eq!(status, 409);
    assert_eq!(fake.calls("service/get_corp_token"), calls, "a rejected code is not tried again");

    // change_auth for it fails permanently instead of being retried ten times.
    app.command(&auth_event_xml(&app.seeded_suite, "change_auth", "wpCorpGone1", 1_700_000_500)).await;
    let events = app.settled().await;
    let change = events.iter().find(|e| e["kind"] == "change_auth").expect("change_auth stored");
    assert_eq!(change["status"], "failed");
    assert_eq!(change["attempts"], 1);
    assert!(change["last_error"].as_str().is_some_and(|e| e.contains("40084")), "{change}");

    // A new install clears the mark.
    app.install(&fake, "wpCorpGone1", "Back Corp").await;
    let corp = eventually("the mark is cleared", || async {
        let (_, corp) = app.api(&corp_path(&app, "wpCorpGone1")).await;
        (corp["auth_error"].is_null()).then_some(corp)
    })
    .await;
    assert_eq!(corp["status"], "active");
    app.stop().await;
    fake.stop().await;
}

/// A whole lifecycle in the real binary with debug logging: nothing secret is
/// written, however verbose the logs.
#[tokio::test]
async fn logs_of_a_whole_lifecycle_contain_no_secret() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let base = fake.base.clone();
    let app = TestApp::spawn_binary(&db, |env| {
        env.insert("WECOM_API_BASE".into(), base);
        env.insert("RUST_LOG".into(), "debug".into());
    })
    .await;
    fake.add_provider(PROVIDER_CORPID, PROVIDER_SECRET);
    fake.add_suite(PROVIDER_CORPID, SUITE_ID, SUITE_SECRET);
    app.push_ticket(&fake).await;
    app.install(&fake, "wpCorpLog01", "Log Corp").await;
    for path in [
        format!("/api/v1/suites/{SUITE_ID}/token?refresh=true"),
        format!("/api/v1/providers/{PROVIDER_CORPID}/token"),
        format!("/api/v1/suites/{SUITE_ID}/corps/wpCorpLog01/token?refresh=true"),
    ] {
        let (status, body) = app.api(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // A token WeCom calls invalid, a failing call and a revoked code: the error paths log too.
    fake.inject("service/get_corp_token", Injection::Errcode(42001));
    fake.inject("service/get_suite_token", Injection::Http500);
    let (status, _) = app.api(&format!("/api/v1/suites/{SUITE_ID}/corps/wpCorpLog01/token?refresh=true")).await;
    assert_eq!(status, 200);
    app.command(&auth_event_xml(SUITE_ID, "change_auth", "wpCorpLog01", 1_700_000_600)).await;
    app.command(&auth_event_xml(SUITE_ID, "cancel_auth", "wpCorpLog01", 1_700_000_700)).await;
    app.settled().await;

    let output = app.output();
    app.stop().await;
    fake.stop().await;
    assert!(output.contains("corp authorized"), "the logs were captured: {output}");
    let mut secrets = fake.issued_secrets();
    secrets.extend([SUITE_SECRET, PROVIDER_SECRET, SUITE_AES_KEY, PROVIDER_AES_KEY, ADMIN_TOKEN].map(str::to_owned));
    assert!(secrets.len() > 8);
    for secret in secrets {
        assert!(!output.contains(&secret), "a secret leaked into the logs: {secret}");
    }
}
