//! Ciphertext IDs against the fake WeCom: conversions cached per provider, the
//! identity graph with automatic pending_id resolution, and the bulk migration.

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use wecom_provider::store::now_ms;

use crate::fake_wecom::{CallbackTarget, FakeWecom, Injection};
use crate::helpers::*;

const CORP: &str = "wpCorpIds01";

async fn post(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let response = app.client.post(app.url(path)).bearer_auth(ADMIN_TOKEN).json(body).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn corp_path(app: &TestApp, corpid: &str, route: &str) -> String {
    format!("/api/v1/suites/{}/corps/{corpid}/{route}", app.seeded_suite)
}

fn target(app: &TestApp) -> CallbackTarget {
    CallbackTarget {
        url: app.url(&command_path(&app.seeded_suite)),
        suite_id: app.seeded_suite.clone(),
        keys: suite_keys(),
    }
}

/// A service with a ticket and one installed corp.
async fn with_corp(db: &TestDb, fake: &FakeWecom) -> TestApp {
    let app = spawn_against(db, fake, |_| {}).await;
    app.push_ticket(fake).await;
    app.install(fake, CORP, "Ids Corp").await;
    app
}

async fn lookup(app: &TestApp, unionid: &str) -> Value {
    let body = json!({"unionid": unionid, "openid": format!("openid-of-{unionid}"), "subject_type": 1});
    let (status, answer) = post(app, &corp_path(app, CORP, "unionid_lookups"), &body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn identity(app: &TestApp, query: &str) -> (u16, Value) {
    app.api(&format!("/api/v1/providers/{}/identities?{query}", app.seeded_provider)).await
}

#[tokio::test]
async fn a_unionid_of_an_existing_customer_resolves_at_once() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = with_corp(&db, &fake).await;
    fake.add_customer(CORP, "oUnionCustomer");

    let answer = lookup(&app, "oUnionCustomer").await;
    let external_userid = answer["external_userid"].as_str().expect("an external_userid").to_owned();
    assert!(external_userid.starts_with("wm"));
    assert_eq!(answer["pending_id"], Value::Null);

    let (status, found) = identity(&app, "unionid=oUnionCustomer").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["openid"], "openid-of-oUnionCustomer");
    assert_eq!(found["links"][0]["corpid"], CORP);
    assert_eq!(found["links"][0]["status"], "linked");
    assert_eq!(found["links"][0]["external_userid"], external_userid.as_str());
    let (_, by_external) = identity(&app, &format!("corpid={CORP}&external_userid={external_userid}")).await;
    assert_eq!(by_external["unionid"], "oUnionCustomer");

    // A linked identity is answered from the graph.
    assert_eq!(lookup(&app, "oUnionCustomer").await, answer);
    assert_eq!(fake.calls("idconvert/unionid_to_external_userid"), 1);

    let (status, body) = identity(&app, "unionid=oNobody").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, _) = identity(&app, "pending_id=p&unionid=u").await;
    assert_eq!(status, 400);
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_pending_id_is_linked_when_the_user_adds_a_member_as_a_friend() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = with_corp(&db, &fake).await;

    let answer = lookup(&app, "oUnionLater").await;
    assert_eq!(answer["external_userid"], Value::Null);
    let pending_id = answer["pending_id"].as_str().expect("a pending_id").to_owned();
    let (_, found) = identity(&app, &format!("pending_id={pending_id}")).await;
    assert_eq!(found["unionid"], "oUnionLater");
    assert_eq!(found["links"][0]["status"], "pending");

    let external_userid = fake.add_friend(&target(&app), CORP, "oUnionLater", "zhangsan").await;
    let linked = eventually("the pending link is linked", || async {
        let (_, found) = identity(&app, "unionid=oUnionLater").await;
        (found["links"][0]["status"] == "linked").then_some(found)
    })
    .await;
    assert_eq!(linked["links"][0]["external_userid"], external_userid.as_str());
    assert_eq!(linked["links"][0]["pending_id"], pending_id.as_str());
    assert_eq!(fake.calls("idconvert/batch/external_userid_to_pending_id"), 1);

    let events = app.settled().await;
    let linked_events: Vec<&Value> = events.iter().filter(|e| e["kind"] == "identity_linked").collect();
    assert_eq!(linked_events.len(), 1, "{events:?}");
    let fields = &linked_events[0]["fields"];
    assert_eq!(fields["unionid"], "oUnionLater");
    assert_eq!(fields["external_userid"], external_userid.as_str());
    assert_eq!(fields["corpid"], CORP);
    assert_eq!(fields["provider_corpid"], PROVIDER_CORPID);
    assert_eq!(linked_events[0]["corpid"], CORP);

    // The customer deletes the member: removed; adds again: linked, without asking WeCom.
    let delete = format!(
        "<xml><SuiteId>{SUITE_ID}</SuiteId><AuthCorpId>{CORP}</AuthCorpId><InfoType>change_external_contact</InfoType><TimeStamp>1700000900</TimeStamp><ChangeType>del_follow_user</ChangeType><UserID>zhangsan</UserID><ExternalUserID>{external_userid}</ExternalUserID></xml>"
    );
    app.command(&delete).await;
    eventually("the link is removed", || async {
        let (_, found) = identity(&app, "unionid=oUnionLater").await;
        (found["links"][0]["status"] == "removed").then_some(())
    })
    .await;
    fake.add_friend(&target(&app), CORP, "oUnionLater", "lisi").await;
    eventually("the link is back", || async {
        let (_, found) = identity(&app, "unionid=oUnionLater").await;
        (found["links"][0]["status"] == "linked").then_some(())
    })
    .await;
    // A friend nobody waits for costs no pending_id query either.
    fake.add_friend(&target(&app), CORP, "oUnionStranger", "zhangsan").await;
    app.settled().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.calls("idconvert/batch/external_userid_to_pending_id"), 1);
    assert_eq!(app.events().await.iter().filter(|e| e["kind"] == "identity_linked").count(), 1);
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_pending_id_older_than_90_days_is_not_matched() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = with_corp(&db, &fake).await;
    let pending_id = lookup(&app, "oUnionOld").await["pending_id"].as_str().expect("pending_id").to_owned();
    let ninety_one_days_ago = now_ms() - 91 * 24 * 3_600_000;
    db.execute(&format!(
        "UPDATE identity_links SET pending_since = {ninety_one_days_ago} WHERE pending_id = '{pending_id}'"
    ));

    fake.add_friend(&target(&app), CORP, "oUnionOld", "zhangsan").await;
    app.settled().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, found) = identity(&app, "unionid=oUnionOld").await;
    assert_eq!(found["links"][0]["status"], "pending");
    assert_eq!(
        fake.calls("idconvert/batch/external_userid_to_pending_id"),
        0,
        "an expired pending_id is not worth a call"
    );
    assert_eq!(app.events().await.iter().filter(|e| e["kind"] == "identity_linked").count(), 0);

    // The next visit asks again and, the user being a customer now, links at once.
    let answer = lookup(&app, "oUnionOld").await;
    assert!(answer["external_userid"].as_str().is_some_and(|id| id.starts_with("wm")));
    let (_, found) = identity(&app, "unionid=oUnionOld").await;
    assert_eq!(found["links"][0]["status"], "linked");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn each_id_is_converted_upstream_once_and_any_list_length_is_accepted() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = with_corp(&db, &fake).await;

    let mut userids: Vec<String> = (0..2_497).map(|i| format!("user{i:05}")).collect();
    userids.extend(["bad-1", "bad-2", "bad-3"].map(str::to_owned));
    userids.push("user00007".into()); // a duplicate is answered once
    userids.extend(["ZhangSan", "zhangsan"].map(str::to_owned));
    let (status, first) = post(&app, &corp_path(&app, CORP, "open_userids"), &json!({ "userids": userids })).await;
    assert_eq!(status, 200, "{first}");
    let items = first["items"].as_array().expect("items");
    assert_eq!(items.len(), 2_499);
    assert_eq!(items[0]["userid"], "user00000");
    assert!(items[0]["open_userid"].as_str().is_some_and(|id| id.starts_with("wo")));
    let open_of = |name: &str| items.iter().find(|item| item["userid"] == name).map(|item| item["open_userid"].clone());
    assert_ne!(open_of("ZhangSan"), open_of("zhangsan"), "IDs are case-sensitive");
    let invalid = first["invalid"].as_array().expect("invalid");
    assert_eq!(invalid.len(), 3);
    assert_eq!(invalid[0]["id"], "bad-1");
    assert!(invalid[0]["reason"].as_str().is_some_and(|r| r.contains("invalid_userid")));
    assert_eq!(fake.calls("batch/userid_to_openuserid"), 3, "1000 + 1000 + 502 ids");

    let (_, second) = post(&app, &corp_path(&app, CORP, "open_userids"), &json!({ "userids": userids[..2_497] })).await;
    assert_eq!(second["items"].as_array().map(Vec::len), Some(2_497));
    assert_eq!(second["items"][2_496], first["items"][2_496]);
    assert_eq!(fake.calls("batch/userid_to_openuserid"), 3, "known conversions cost no call");
    assert!((0..2_497).all(|i| fake.times_converted("batch/userid_to_openuserid", &format!("user{i:05}")) == 1));

    let external: Vec<String> = (0..450).map(|i| format!("wmOld{i:04}")).collect();
    let (status, answer) =
        post(&app, &corp_path(&app, CORP, "new_external_userids"), &json!({ "external_userids": external })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["items"].as_array().map(Vec::len), Some(450));
    assert!(answer["items"][0]["new_external_userid"].is_string());
    assert_eq!(fake.calls("externalcontact/get_new_external_userid"), 3, "200 + 200 + 50 ids");
    let body = json!({"external_userids": ["wmGroupOnly1", "badGroup"], "chat_id": "wrChat1"});
    let (_, answer) = post(&app, &corp_path(&app, CORP, "new_external_userids"), &body).await;
    assert_eq!(answer["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(answer["invalid"][0]["id"], "badGroup");
    assert_eq!(fake.calls("externalcontact/groupchat/get_new_external_userid"), 1);

    fake.add_plain_corp("wwPlainCorp1");
    let body = json!({"corpids": ["wwPlainCorp1", "wwNoRelation"]});
    let path = format!("/api/v1/providers/{PROVIDER_CORPID}/open_corpids");
    let (status, answer) = post(&app, &path, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["items"][0]["corpid"], "wwPlainCorp1");
    assert!(answer["items"][0]["open_corpid"].as_str().is_some_and(|id| id.starts_with("wp")));
    assert!(answer["invalid"][0]["reason"].as_str().is_some_and(|r| r.contains("48001")), "{answer}");
    let (_, again) = post(&app, &path, &json!({"corpids": ["wwPlainCorp1"]})).await;
    assert_eq!(again["items"], answer["items"]);
    assert_eq!(fake.times_converted("service/corpid_to_opencorpid", "wwPlainCorp1"), 1);

    // Bad input changes nothing and says why.
    let (status, body) = post(&app, &corp_path(&app, CORP, "open_userids"), &json!({"userids": "zhangsan"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_body")));
    let (status, _) = post(&app, &corp_path(&app, CORP, "open_userids"), &json!({"userids": [""]})).await;
    assert_eq!(status, 400);
    let bad_subject = json!({"unionid": "u", "openid": "o", "subject_type": 2});
    let (status, _) = post(&app, &corp_path(&app, CORP, "unionid_lookups"), &bad_subject).await;
    assert_eq!(status, 400);
    let (status, _) = post(&app, &corp_path(&app, "wpNoSuchCorp", "open_userids"), &json!({"userids": ["a"]})).await;
    assert_eq!(status, 404);
    app.command(&auth_event_xml(SUITE_ID, "cancel_auth", CORP, 1_700_000_950)).await;
    app.settled().await;
    let (status, body) = post(&app, &corp_path(&app, CORP, "open_userids"), &json!({"userids": ["x"]})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("corp_not_active")));
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn two_providers_see_different_ids_for_one_plaintext() {
    let fake = FakeWecom::start().await;
    fake.add_plain_corp("wwPlainShared");
    let mut answers = Vec::new();
    for (provider, suite) in [(PROVIDER_CORPID, SUITE_ID), ("wwProviderTwo", "wwsuite0002")] {
        let db = TestDb::new();
        let app = spawn_against(&db, &fake, |env| {
            env.insert("WECOM_PROVIDER_CORPID".into(), provider.into());
            env.insert("WECOM_SUITE_ID".into(), suite.into());
        })
        .await;
        app.push_ticket(&fake).await;
        app.install(&fake, CORP, "Shared Corp").await;
        let (_, users) = post(&app, &corp_path(&app, CORP, "open_userids"), &json!({"userids": ["zhangsan"]})).await;
        let path = format!("/api/v1/providers/{provider}/open_corpids");
        let (_, corps) = post(&app, &path, &json!({"corpids": ["wwPlainShared"]})).await;
        answers.push((users["items"][0]["open_userid"].clone(), corps["items"][0]["open_corpid"].clone()));
        app.stop().await;
    }
    assert!(answers.iter().all(|(user, corp)| user.is_string() && corp.is_string()), "{answers:?}");
    assert_ne!(answers[0].0, answers[1].0);
    assert_ne!(answers[0].1, answers[1].1);
    fake.stop().await;
}

/// Runs `wecom-provider ids convert` on the test's CSV (off the async threads: the
/// fake WeCom answers on them meanwhile).
async fn convert(db: &TestDb, fake: &FakeWecom, dir: &std::path::Path) -> Output {
    let mut env = env_for(db);
    env.insert("WECOM_API_BASE".into(), fake.base.clone());
    let path = |name: &str| dir.join(name).display().to_string();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wecom-provider"));
    command
        .args(["ids", "convert", "--kind", "userid", "--suite", SUITE_ID, "--corp", CORP, "--column", "userid"])
        .args(["--input", &path("members.csv"), "--output", &path("converted.csv"), "--rejects", &path("rejects.csv")])
        .args(["--calls-per-minute", "60000"])
        .env_clear()
        .envs(&env);
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs")).await.expect("join")
}

#[tokio::test]
async fn a_bulk_conversion_interrupted_half_way_resumes_without_asking_twice() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = with_corp(&db, &fake).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut csv = String::from("name,userid\n");
    for i in 0..5_000 {
        // The last rows hold ids WeCom refuses.
        let userid = if i >= 4_995 { format!("bad{i}") } else { format!("member{i:05}") };
        csv.push_str(&format!("Member {i},{userid}\n"));
    }
    std::fs::write(dir.path().join("members.csv"), csv).expect("input written");

    // WeCom's frequency limit stops the run at the third batch.
    fake.inject("batch/userid_to_openuserid", Injection::Delay(Duration::ZERO));
    fake.inject("batch/userid_to_openuserid", Injection::Delay(Duration::ZERO));
    fake.inject("batch/userid_to_openuserid", Injection::Errcode(45009));
    let first = convert(&db, &fake, dir.path()).await;
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped after 2000 of 5000") && stderr.contains("run the same command again"), "{stderr}");
    assert_eq!(fake.calls("batch/userid_to_openuserid"), 3);

    let second = convert(&db, &fake, dir.path()).await;
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "rows were rejected: {stderr}");
    assert!(stderr.contains("4995 converted") && stderr.contains("5 rejected"), "{stderr}");
    assert_eq!(fake.calls("batch/userid_to_openuserid"), 6, "two stored batches were not asked again");
    assert!((0..4_995).all(|i| fake.times_converted("batch/userid_to_openuserid", &format!("member{i:05}")) == 1));

    let converted = std::fs::read_to_string(dir.path().join("converted.csv")).expect("output");
    let lines: Vec<&str> = converted.lines().collect();
    assert_eq!(lines[0], "name,userid,open_userid");
    assert_eq!(lines.len(), 4_996);
    assert!(lines[1].starts_with("Member 0,member00000,wo"), "{}", lines[1]);
    let rejects = std::fs::read_to_string(dir.path().join("rejects.csv")).expect("rejects");
    assert_eq!(rejects.lines().count(), 6);
    assert!(rejects.lines().nth(1).is_some_and(|line| line.starts_with("Member 4995,bad4995,invalid_userid")));

    // The service answers the same conversions from the table.
    let (_, answer) = post(&app, &corp_path(&app, CORP, "open_userids"), &json!({"userids": ["member04000"]})).await;
    assert!(lines.iter().any(|line| line.ends_with(answer["items"][0]["open_userid"].as_str().unwrap_or("?"))));
    assert_eq!(fake.calls("batch/userid_to_openuserid"), 6);
    app.stop().await;
    fake.stop().await;
}

/// 48004 from an API called with a corp token means that API is not permitted: it
/// never marks the corp's permanent code, so its tokens keep working.
#[tokio::test]
async fn a_conversion_refused_with_48004_leaves_the_corp_authorized() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = with_corp(&db, &fake).await;
    fake.inject("batch/userid_to_openuserid", Injection::Errcode(48004));
    let (status, body) = post(&app, &corp_path(&app, CORP, "open_userids"), &json!({ "userids": ["user1"] })).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["errcode"], 48004);
    let (status, corp) = app.api(&format!("/api/v1/suites/{}/corps/{CORP}", app.seeded_suite)).await;
    assert_eq!((status, corp["auth_error"].clone()), (200, Value::Null), "{corp}");
    let (status, token) =
        app.api(&format!("/api/v1/suites/{}/corps/{CORP}/token?refresh=true", app.seeded_suite)).await;
    assert_eq!(status, 200, "{token}");
    app.stop().await;
    fake.stop().await;
}
