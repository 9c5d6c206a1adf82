//! Licenses against the fake WeCom: orders (dry run, paid test orders, refunds),
//! activation and transfer with WeCom's rules, auto-activation and unlicensed
//! members from the callbacks, and the expiry notices.

use reqwest::Method;
use serde_json::{Value, json};

use crate::fake_wecom::FakeWecom;
use crate::helpers::*;

const CORP: &str = "wpLicCorp0001";
const OTHER_CORP: &str = "wpLicCorp0002";

fn licenses_path(app: &TestApp, corpid: &str) -> String {
    format!("/api/v1/suites/{}/corps/{corpid}/licenses", app.seeded_suite)
}

/// The service against the fake, with `corpids` installed (test corps, whose
/// orders are paid at once) and the fake pushing license callbacks to it.
async fn licensed_app(db: &TestDb, fake: &FakeWecom, corpids: &[&str], env: &[(&str, &str)]) -> TestApp {
    let app = spawn_against(db, fake, |vars| {
        for (name, value) in env {
            vars.insert((*name).to_owned(), (*value).to_owned());
        }
    })
    .await;
    fake.push_license_callbacks_to(&app.base, &app.seeded_suite);
    app.push_ticket(fake).await;
    for corpid in corpids {
        fake.add_test_corp(corpid);
        app.install(fake, corpid, "Licensed Corp").await;
    }
    app
}

async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    app.events().await.into_iter().filter(|event| event["kind"] == kind).collect()
}

/// Buys base accounts for a test corp and waits until the pay callback's effect ran.
async fn buy(app: &TestApp, corpid: &str, base_count: i64) -> String {
    let body = json!({"buyer_userid": "boss", "base_count": base_count, "months": 1});
    let (status, order) = app.send(Method::POST, &format!("{}/orders", licenses_path(app, corpid)), Some(&body)).await;
    assert_eq!(status, 200, "{order}");
    let order_id = order["order_id"].as_str().expect("an order id").to_owned();
    eventually("the pay callback is applied", || async {
        let paid = events_of(app, "license_paid").await;
        paid.iter().any(|event| event["fields"]["order_id"] == order_id.as_str()).then_some(())
    })
    .await;
    app.settled().await;
    order_id
}

async fn activate(app: &TestApp, corpid: &str, body: &Value) -> (u16, Value) {
    app.send(Method::POST, &format!("{}/activations", licenses_path(app, corpid)), Some(body)).await
}

async fn overview(app: &TestApp, corpid: &str) -> Value {
    let (status, body) = app.api(&licenses_path(app, corpid)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Every stored license row, to show that a refusal changed nothing.
fn license_rows(db: &TestDb) -> Vec<i64> {
    [
        "SELECT COUNT(*) FROM license_orders",
        "SELECT COUNT(*) FROM license_codes WHERE status = 2",
        "SELECT COUNT(*) FROM license_codes WHERE status = 1",
        "SELECT COUNT(*) FROM license_codes WHERE userid IS NOT NULL",
        "SELECT COUNT(*) FROM license_unlicensed",
        "SELECT COUNT(*) FROM events",
    ]
    .iter()
    .map(|sql| db.count(sql))
    .collect()
}

#[tokio::test]
async fn a_test_corps_order_is_paid_at_once_and_its_codes_stored_from_the_pay_callback() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = licensed_app(&db, &fake, &[CORP], &[]).await;
    let orders = format!("{}/orders", licenses_path(&app, CORP));

    let plan = json!({"base_count": 2, "external_contact_count": 1, "months": 1, "dry_run": true});
    let (status, answer) = app.send(Method::POST, &orders, Some(&plan)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["dry_run"], true);
    assert_eq!(answer["total_days"], 31);
    assert_eq!(answer["account_count"], json!({"base_count": 2, "external_contact_count": 1}));
    assert_eq!(answer["order_id"], Value::Null);
    assert_eq!(fake.calls("license/create_new_order"), 0, "a dry run buys nothing");

    let (status, answer) = app.send(Method::POST, &orders, Some(&json!({"base_count": 0, "months": 1}))).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_body")), "{answer}");
    let (status, answer) = app.send(Method::POST, &orders, Some(&json!({"base_count": 1, "months": 1}))).await;
    assert_eq!(status, 400, "a real order names its buyer: {answer}");

    let order_id = buy(&app, CORP, 3).await;
    assert_eq!(fake.calls("license/create_new_order"), 1);
    assert_eq!(fake.order_status(&order_id), Some(1));
    let paid = events_of(&app, "license_paid").await;
    assert_eq!(paid.len(), 1, "paid once, though the API and the callback both read the order: {paid:?}");
    assert_eq!(paid[0]["suite_id"], app.seeded_suite.as_str());
    assert_eq!(paid[0]["corpid"], CORP);
    assert_eq!(paid[0]["fields"]["codes"], 3);

    let view = overview(&app, CORP).await;
    assert_eq!(view["codes"], json!({"bought": 3, "active": 0, "free": 3, "expiring_within_30_days": 0}));
    assert_eq!(view["license_status"], 1);
    assert_eq!(view["trial"], Value::Null, "test corps have no trial");
    assert_eq!(db.count(&format!("SELECT COUNT(*) FROM license_orders WHERE order_id = '{order_id}'")), 1);
    assert!(fake.calls("service/get_provider_token") >= 1, "license calls carry the provider token");

    // A formal corp's order waits for its payment; the pay callback brings its codes.
    app.install(&fake, OTHER_CORP, "Formal Corp").await;
    let body = json!({"buyer_userid": "boss", "base_count": 2, "months": 12});
    let (status, order) =
        app.send(Method::POST, &format!("{}/orders", licenses_path(&app, OTHER_CORP)), Some(&body)).await;
    assert_eq!((status, order["order_status"].as_i64()), (200, Some(0)), "{order}");
    assert_eq!(overview(&app, OTHER_CORP).await["codes"]["bought"], 0);
    fake.pay_order(order["order_id"].as_str().expect("order id"));
    eventually("the formal order is paid", || async {
        (events_of(&app, "license_paid").await.len() == 2).then_some(())
    })
    .await;
    app.settled().await;
    assert_eq!(overview(&app, OTHER_CORP).await["codes"]["free"], 2);
    app.stop().await;
}

#[tokio::test]
async fn activation_binds_a_code_and_a_refused_activation_changes_nothing() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = licensed_app(&db, &fake, &[CORP, OTHER_CORP], &[]).await;
    buy(&app, CORP, 3).await;
    buy(&app, OTHER_CORP, 1).await;
    let codes = fake.free_codes(CORP);
    let foreign = fake.free_codes(OTHER_CORP);

    let (status, answer) = activate(&app, CORP, &json!({"userid": "zhangsan", "active_code": codes[0]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["errcode"], 0);
    let view = overview(&app, CORP).await;
    assert_eq!(view["codes"]["active"], 1);
    assert_eq!(view["codes"]["free"], 2);
    assert_eq!(view["codes"]["expiring_within_30_days"], 0, "31 days left");
    assert_eq!(view["members"][0]["userid"], "zhangsan");
    assert_eq!(view["members"][0]["active_code"], codes[0].as_str());
    assert_eq!(view["members"][0]["type"], "base");
    let activated = events_of(&app, "license_activated").await;
    assert_eq!(activated.len(), 1, "{activated:?}");
    assert_eq!(activated[0]["fields"]["userid"], "zhangsan");

    let before = (license_rows(&db), overview(&app, CORP).await);
    let refusals = [
        (json!({"userid": "lisi", "active_code": codes[0]}), 701003, "already bound"),
        (json!({"userid": "lisi", "active_code": foreign[0]}), 701021, "another corp"),
        (json!({"userid": "zhangsan", "active_code": codes[1]}), 701082, "20 days"),
    ];
    for (body, errcode, meaning) in refusals {
        let (status, answer) = activate(&app, CORP, &body).await;
        assert_eq!(status, 409, "{answer}");
        assert_eq!(answer["error"]["code"], "license_refused");
        assert_eq!(answer["error"]["errcode"], errcode, "{answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| m.contains(meaning)), "{answer}");
    }
    assert_eq!((license_rows(&db), overview(&app, CORP).await), before, "refusals change nothing");

    // A batch reports each item; the bound ones are stored.
    let batch = json!([{"userid": "lisi", "active_code": codes[1]}, {"userid": "wangwu", "active_code": codes[0]}]);
    let (status, answer) = activate(&app, CORP, &batch).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["errcode"], 0);
    assert_eq!(answer["results"][1]["errcode"], 701003);
    assert!(answer["results"][1]["meaning"].as_str().is_some_and(|m| m.contains("already bound")));
    let view = overview(&app, CORP).await;
    let holders: Vec<&str> = view["members"].as_array().unwrap().iter().filter_map(|m| m["userid"].as_str()).collect();
    assert_eq!(holders.len(), 2);
    assert!(holders.contains(&"lisi") && holders.contains(&"zhangsan"), "{view}");
    app.stop().await;
}

#[tokio::test]
async fn a_transfer_moves_a_license_and_one_to_a_licensed_member_is_refused() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = licensed_app(&db, &fake, &[CORP], &[]).await;
    buy(&app, CORP, 2).await;
    let codes = fake.free_codes(CORP);
    let batch = json!([{"userid": "zhangsan", "active_code": codes[0]}, {"userid": "lisi", "active_code": codes[1]}]);
    assert_eq!(activate(&app, CORP, &batch).await.0, 200);
    let transfers = format!("{}/transfers", licenses_path(&app, CORP));

    let before = (license_rows(&db), overview(&app, CORP).await);
    let refused = json!({"handover_userid": "zhangsan", "takeover_userid": "lisi"});
    let (status, answer) = app.send(Method::POST, &transfers, Some(&refused)).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["errcode"], 701018);
    assert_eq!((license_rows(&db), overview(&app, CORP).await), before, "nothing changed");

    let moved = json!({"handover_userid": "zhangsan", "takeover_userid": "wangwu"});
    let (status, answer) = app.send(Method::POST, &transfers, Some(&moved)).await;
    assert_eq!(status, 200, "{answer}");
    let view = overview(&app, CORP).await;
    let holder = |userid: &str| view["members"].as_array().unwrap().iter().find(|m| m["userid"] == userid).cloned();
    assert_eq!(holder("wangwu").expect("wangwu holds it")["active_code"], codes[0].as_str());
    assert!(holder("zhangsan").is_none(), "{view}");
    assert_eq!(view["codes"]["active"], 2);
    let activated = events_of(&app, "license_activated").await;
    let taken: Vec<&Value> = activated.iter().filter(|e| e["fields"]["userid"] == "wangwu").collect();
    assert_eq!(taken.len(), 1, "the new holder is reported: {activated:?}");
    assert_eq!(taken[0]["fields"]["active_code"], codes[0].as_str());
    app.stop().await;
}

#[tokio::test]
async fn an_order_for_a_cancelled_corp_is_refused_and_stores_nothing() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = licensed_app(&db, &fake, &[CORP, OTHER_CORP], &[]).await;
    let body = json!({"buyer_userid": "boss", "base_count": 1, "months": 1});

    // Cancelled at WeCom, its cancel_auth not (yet) here: WeCom's errcode answers.
    fake.revoke(CORP);
    let before = license_rows(&db);
    let (status, answer) = app.send(Method::POST, &format!("{}/orders", licenses_path(&app, CORP)), Some(&body)).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["errcode"], 701015);
    assert_eq!(license_rows(&db), before);

    // Cancelled here: refused before WeCom is asked.
    app.command(&auth_event_xml(&app.seeded_suite, "cancel_auth", OTHER_CORP, 1_700_000_300)).await;
    app.settled().await;
    let calls = fake.calls("license/create_new_order");
    let (status, answer) =
        app.send(Method::POST, &format!("{}/orders", licenses_path(&app, OTHER_CORP)), Some(&body)).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("corp_not_active")), "{answer}");
    assert_eq!(fake.calls("license/create_new_order"), calls);
    assert_eq!(db.count("SELECT COUNT(*) FROM license_orders"), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_refund_voids_the_unused_codes_and_is_reported() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = licensed_app(&db, &fake, &[CORP], &[]).await;
    let order_id = buy(&app, CORP, 3).await;
    let codes = fake.free_codes(CORP);
    assert_eq!(activate(&app, CORP, &json!({"userid": "zhangsan", "active_code": codes[0]})).await.0, 200);

    assert_eq!(fake.refund(&order_id).await, 200);
    let refunded = eventually("license_refunded", || async {
        let events = events_of(&app, "license_refunded").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(refunded[0]["fields"]["order_id"], order_id.as_str());
    assert_eq!(refunded[0]["fields"]["refunded"], true);
    app.settled().await;
    let view = overview(&app, CORP).await;
    assert_eq!(view["codes"], json!({"bought": 1, "active": 1, "free": 0, "expiring_within_30_days": 0}));
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM license_orders WHERE order_status = 5 AND order_id = '{order_id}'")),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn auto_activation_and_unlicensed_members_are_recorded_from_the_callbacks() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = licensed_app(&db, &fake, &[CORP], &[]).await;
    let switch = format!("{}/auto_activate", licenses_path(&app, CORP));

    // Never bought for: WeCom's 701071, with its meaning.
    let (status, answer) = app.api(&switch).await;
    assert_eq!((status, answer["error"]["errcode"].as_i64()), (409, Some(701071)), "{answer}");

    buy(&app, CORP, 2).await;
    let (status, answer) = app.api(&switch).await;
    assert_eq!((status, answer["auto_active_status"].as_i64()), (200, Some(0)), "{answer}");
    let (status, answer) = app.send(Method::PUT, &switch, Some(&json!({"auto_active_status": 2}))).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = app.send(Method::PUT, &switch, Some(&json!({"auto_active_status": 1}))).await;
    assert_eq!((status, answer["auto_active_status"].as_i64()), (200, Some(1)), "{answer}");

    assert_eq!(fake.member_opens_app(CORP, "zhaoliu").await, 200);
    let activated = eventually("license_activated from auto_activate", || async {
        let events = events_of(&app, "license_activated").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(activated[0]["fields"]["userid"], "zhaoliu");
    assert_eq!(activated[0]["fields"]["scene"], "1");

    let (status, _) = app.send(Method::PUT, &switch, Some(&json!({"auto_active_status": 0}))).await;
    assert_eq!(status, 200);
    assert_eq!(fake.member_opens_app(CORP, "sunqi").await, 200);
    let needed = eventually("license_needed from unlicensed_notify", || async {
        let events = events_of(&app, "license_needed").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(needed[0]["fields"]["userid"], "sunqi");
    app.settled().await;
    let view = overview(&app, CORP).await;
    assert_eq!(view["auto_active_status"], 0);
    assert_eq!(view["members"][0]["userid"], "zhaoliu");
    assert_eq!(view["unlicensed"][0]["userid"], "sunqi", "{view}");
    assert_eq!(view["codes"]["free"], 1);

    // Activating the unlicensed member clears the mark.
    let code = fake.free_codes(CORP).remove(0);
    assert_eq!(activate(&app, CORP, &json!({"userid": "sunqi", "active_code": code})).await.0, 200);
    assert_eq!(overview(&app, CORP).await["unlicensed"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn expiring_codes_and_trials_are_announced_once_per_threshold() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    // A test corp's code lasts 31 days, a trial 90: both within 100 days.
    let env = [("LICENSE_EXPIRY_NOTICE_DAYS", "100")];
    let app = licensed_app(&db, &fake, &[CORP], &env).await;
    app.install(&fake, OTHER_CORP, "Trial Corp").await;
    let trial = overview(&app, OTHER_CORP).await;
    assert!(trial["trial"]["end_time"].as_str().is_some_and(|end| end.ends_with('Z')), "{trial}");
    buy(&app, CORP, 1).await;
    let code = fake.free_codes(CORP).remove(0);
    assert_eq!(activate(&app, CORP, &json!({"userid": "zhangsan", "active_code": code})).await.0, 200);
    assert!(events_of(&app, "license_expiring").await.is_empty(), "the start-up scan saw nothing yet");
    app.stop().await;

    // The scan runs at start: a restart stands for the next hour.
    for _ in 0..2 {
        let app = licensed_app(&db, &fake, &[], &env).await;
        let expiring = eventually("license_expiring", || async {
            let events = events_of(&app, "license_expiring").await;
            (events.len() >= 2).then_some(events)
        })
        .await;
        assert_eq!(expiring.len(), 2, "once per code and trial: {expiring:?}");
        let subject = |name: &str| expiring.iter().find(|e| e["fields"]["subject"] == name).cloned().expect(name);
        assert_eq!(subject("code")["fields"]["active_code"], code.as_str());
        assert_eq!(subject("code")["fields"]["userid"], "zhangsan");
        assert_eq!(subject("code")["corpid"], CORP);
        assert_eq!(subject("trial")["corpid"], OTHER_CORP);
        assert_eq!(subject("trial")["fields"]["notice_days"], 100);
        app.stop().await;
    }
}

/// `licenses sync` as the binary runs it, against the fake.
async fn sync_cli(db: &TestDb, fake: &FakeWecom) -> (bool, String) {
    let mut env = env_for(db);
    env.insert("WECOM_API_BASE".into(), fake.base.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wecom-provider"))
            .args(["licenses", "sync", "--calls-per-minute", "6000"])
            .env_clear()
            .envs(&env)
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("joined");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn sync_restores_what_a_late_deployment_missed_and_resumes_where_it_stopped() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = licensed_app(&db, &fake, &[CORP], &[]).await;
    buy(&app, CORP, 3).await;
    let codes = fake.free_codes(CORP);
    assert_eq!(activate(&app, CORP, &json!({"userid": "zhangsan", "active_code": codes[0]})).await.0, 200);
    let expected = overview(&app, CORP).await;
    app.stop().await;
    // A deployment that never saw any of it.
    for table in ["license_orders", "license_codes", "license_apps"] {
        db.execute(&format!("DELETE FROM {table}"));
    }

    // Stopped by an error in its last step: the steps before it are saved.
    fake.inject("license/list_order", crate::fake_wecom::Injection::Errcode(701005));
    let (ok, stderr) = sync_cli(&db, &fake).await;
    assert!(!ok, "{stderr}");
    assert_eq!(db.count("SELECT COUNT(*) FROM license_sync WHERE step = 'orders' AND finished_at IS NULL"), 1);
    let app_reads = fake.calls("license/get_app_license_info");

    let (ok, stderr) = sync_cli(&db, &fake).await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("[1/1]") && stderr.contains("from step orders"), "{stderr}");
    assert_eq!(fake.calls("license/get_app_license_info"), app_reads, "resumed, not started again");
    assert_eq!(db.count("SELECT COUNT(*) FROM license_sync WHERE step = 'done' AND finished_at IS NOT NULL"), 1);

    let app = licensed_app(&db, &fake, &[], &[]).await;
    let synced = overview(&app, CORP).await;
    assert_eq!(synced["codes"], expected["codes"]);
    assert_eq!(synced["members"], expected["members"]);
    assert_eq!(events_of(&app, "license_paid").await.len(), 1, "the order was reported once");
    app.stop().await;

    // Every corp synced whole: the next run starts over.
    let (ok, stderr) = sync_cli(&db, &fake).await;
    assert!(ok && stderr.contains("from step app"), "{stderr}");
    assert_eq!(fake.calls("license/get_app_license_info"), app_reads + 1);
}

#[tokio::test]
async fn an_order_whose_answer_is_lost_is_not_sent_again() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = licensed_app(&db, &fake, &[CORP], &[]).await;
    // WeCom creates (and, for a test corp, pays) the order, but its answer is lost.
    fake.inject("license/create_new_order", crate::fake_wecom::Injection::DelayThen500(std::time::Duration::ZERO));
    let body = json!({"buyer_userid": "boss", "base_count": 1, "months": 1});
    let (status, answer) = app.send(Method::POST, &format!("{}/orders", licenses_path(&app, CORP)), Some(&body)).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (502, Some("wecom_answer_lost")), "{answer}");
    assert_eq!(fake.calls("license/create_new_order"), 1, "money is spent once at most");
    // The pay callback still tells the service what was bought.
    eventually("the lost order arrives by its callback", || async {
        (events_of(&app, "license_paid").await.len() == 1).then_some(())
    })
    .await;
    app.settled().await;
    assert_eq!(overview(&app, CORP).await["codes"]["free"], 1);
    app.stop().await;
}

#[tokio::test]
async fn a_tokens_key_reads_licenses_but_only_an_admin_buys_or_binds() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = licensed_app(&db, &fake, &[CORP], &[]).await;
    let created = json!({"name": "license-reader", "scopes": ["tokens"]});
    let (status, key) = app.send(Method::POST, "/api/v1/admin/api-keys", Some(&created)).await;
    assert_eq!(status, 201, "{key}");
    let key = key["key"].as_str().expect("the key").to_owned();
    let as_reader = |method: Method, path: String, body: Value| {
        let request = app.client.request(method, app.url(&path)).bearer_auth(&key).json(&body);
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let base = licenses_path(&app, CORP);
    let (status, view) = as_reader(Method::GET, base.clone(), Value::Null).await;
    assert_eq!(status, 200, "{view}");
    let order = json!({"base_count": 1, "months": 1, "dry_run": true});
    for (method, path, body) in [
        (Method::POST, format!("{base}/orders"), order),
        (Method::POST, format!("{base}/activations"), json!({"userid": "u", "active_code": "c"})),
        (Method::POST, format!("{base}/transfers"), json!({"handover_userid": "a", "takeover_userid": "b"})),
        (Method::PUT, format!("{base}/auto_activate"), json!({"auto_active_status": 1})),
    ] {
        let (status, answer) = as_reader(method, path, body).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("forbidden_scope")), "{answer}");
    }
    assert_eq!(fake.calls("license/set_auto_active_status") + fake.calls("license/active_account"), 0);
    app.stop().await;
}
