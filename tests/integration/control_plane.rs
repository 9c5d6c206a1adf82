//! The control plane: providers and suites managed at runtime (API, command line,
//! `apply`), changes reaching every instance, secrets sealed at rest, the audit log.

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use wecom_provider::crypto::CallbackKeys;

use crate::fake_wecom::FakeWecom;
use crate::helpers::*;

const SECOND_SUITE: &str = "wwsuite0002";
const SECOND_TOKEN: &str = "SecondToken42";
const SECOND_AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const SECOND_SECRET: &str = "second-suite-secret-never-shown";

fn second_keys() -> CallbackKeys {
    CallbackKeys::new(SECOND_TOKEN, SECOND_AES_KEY).expect("second suite keys")
}

fn second_suite_body() -> Value {
    json!({
        "suite_id": SECOND_SUITE,
        "provider_corpid": PROVIDER_CORPID,
        "kind": "third_party",
        "name": "第二个应用",
        "secret": SECOND_SECRET,
        "callback_token": SECOND_TOKEN,
        "encoding_aes_key": SECOND_AES_KEY,
    })
}

async fn push_ticket_to(app: &TestApp, fake: &FakeWecom, suite_id: &str, keys: &CallbackKeys) -> (u16, String) {
    let ticket = fake.new_ticket(suite_id);
    app.post_callback(&command_path(suite_id), keys, suite_id, &suite_ticket_xml(suite_id, &ticket)).await
}

async fn audit(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.api("/api/v1/admin/audit?limit=1000").await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().cloned().unwrap_or_default()
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "a secret is shown: {secret} in {text}");
    }
}

#[tokio::test]
async fn a_suite_managed_at_runtime_takes_effect_without_a_restart() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    fake.add_suite(PROVIDER_CORPID, SECOND_SUITE, SECOND_SECRET);

    // Before it exists its callbacks are unknown.
    assert_eq!(push_ticket_to(&app, &fake, SECOND_SUITE, &second_keys()).await.0, 404);
    let (status, created) = app.send(Method::POST, "/api/v1/admin/suites", Some(&second_suite_body())).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["kind"], "third_party");
    assert_eq!(created["name"], "第二个应用");
    assert!(created["callback_urls"]["command"].as_str().is_some_and(|u| u.ends_with("/callback/wwsuite0002/command")));
    assert_no_secret(&created.to_string(), &[SECOND_SECRET, SECOND_TOKEN, SECOND_AES_KEY]);

    assert_eq!(push_ticket_to(&app, &fake, SECOND_SUITE, &second_keys()).await, (200, "success".to_owned()));
    let token_path = format!("/api/v1/suites/{SECOND_SUITE}/token");
    let token = eventually("the new suite's token", || async {
        let (status, body) = app.api(&token_path).await;
        (status == 200).then_some(body)
    })
    .await;
    assert!(fake.is_valid_token(token["access_token"].as_str().expect("token")));

    // A rotated secret is what the next refresh presents (the fake accepts only it).
    fake.add_suite(PROVIDER_CORPID, SECOND_SUITE, "rotated-second-secret");
    let (status, body) = app.api(&format!("{token_path}?refresh=true")).await;
    assert_eq!(status, 502, "the old secret is refused upstream: {body}");
    let patch = json!({"secret": "rotated-second-secret"});
    let (status, updated) =
        app.send(Method::PATCH, &format!("/api/v1/admin/suites/{SECOND_SUITE}"), Some(&patch)).await;
    assert_eq!((status, updated["changed"].clone()), (200, json!(["secret"])), "{updated}");
    let (status, body) = app.api(&format!("{token_path}?refresh=true")).await;
    assert_eq!(status, 200, "the rotated secret is used: {body}");

    // Disabled: callbacks 404, token routes 409 suite_disabled; enabled again, both work.
    let disable = json!({"enabled": false});
    let (status, _) = app.send(Method::PATCH, &format!("/api/v1/admin/suites/{SECOND_SUITE}"), Some(&disable)).await;
    assert_eq!(status, 200);
    assert_eq!(push_ticket_to(&app, &fake, SECOND_SUITE, &second_keys()).await.0, 404);
    let (status, body) = app.api(&token_path).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("suite_disabled")), "{body}");
    let enable = json!({"enabled": true});
    app.send(Method::PATCH, &format!("/api/v1/admin/suites/{SECOND_SUITE}"), Some(&enable)).await;
    assert_eq!(push_ticket_to(&app, &fake, SECOND_SUITE, &second_keys()).await.0, 200);
    assert_eq!(app.api(&token_path).await.0, 200);

    // Listed with its kind; removed, it is unknown again.
    let (_, listed) = app.api("/api/v1/admin/suites").await;
    let kinds: Vec<&str> =
        listed["suites"].as_array().expect("suites").iter().filter_map(|s| s["kind"].as_str()).collect();
    assert_eq!(kinds, ["third_party", "third_party"]);
    assert_no_secret(&listed.to_string(), &[SECOND_SECRET, SUITE_SECRET, SUITE_TOKEN, SUITE_AES_KEY]);
    let (status, _) = app.send(Method::DELETE, &format!("/api/v1/admin/suites/{SECOND_SUITE}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(app.api(&format!("/api/v1/admin/suites/{SECOND_SUITE}")).await.0, 404);
    assert_eq!(push_ticket_to(&app, &fake, SECOND_SUITE, &second_keys()).await.0, 404);

    // The audit log names who did what, never a secret.
    let entries = audit(&app).await;
    let actions: Vec<&str> =
        entries.iter().filter(|e| e["target"] == SECOND_SUITE).filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["suite.create", "suite.update", "suite.disable", "suite.enable", "suite.remove"]);
    assert!(entries.iter().filter(|e| e["target"] == SECOND_SUITE).all(|e| e["actor"] == "bootstrap"));
    assert_eq!(entries[0]["actor"], "environment", "the seed is audited too: {}", entries[0]);
    assert_no_secret(&json!(entries).to_string(), &[SECOND_SECRET, "rotated-second-secret", SECOND_AES_KEY]);
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn removing_a_suite_with_active_corps_needs_force() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    app.install(&fake, "wpCorpForce1", "Corp Force").await;
    let path = format!("/api/v1/admin/suites/{SUITE_ID}");
    let (status, body) = app.send(Method::DELETE, &path, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("suite_has_corps")), "{body}");
    assert_eq!(app.api(&path).await.0, 200, "nothing was removed");
    let (status, _) = app.send(Method::DELETE, &format!("{path}?force=true"), None).await;
    assert_eq!(status, 204);
    assert_eq!(app.api(&format!("/api/v1/suites/{SUITE_ID}/corps/wpCorpForce1")).await.0, 404);
    assert_eq!(db.count("SELECT COUNT(*) FROM tokens WHERE scope = 'corp'"), 0, "its corp tokens went too");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let before = audit(&app).await.len();
    let with = |field: &str, value: Value| {
        let mut body = second_suite_body();
        body[field] = value;
        body
    };
    let cases = [
        (with("encoding_aes_key", json!(&SECOND_AES_KEY[..42])), 400, "encoding_aes_key"),
        (with("encoding_aes_key", json!(format!("{}!", &SECOND_AES_KEY[..42]))), 400, "encoding_aes_key"),
        (with("kind", json!("dk")), 400, "third_party, customized_template, login"),
        (with("suite_id", json!(SUITE_ID)), 409, "already exists"),
        (with("suite_id", json!("has space")), 400, "suite_id"),
        (with("provider_corpid", json!("wwnobody")), 400, "provider_corpid"),
        (with("callback_token", json!("bad token!")), 400, "callback_token"),
        (with("suite_secret", json!("x")), 400, "suite_secret"),
        (with("logo_url", json!("javascript:alert(1)")), 400, "logo_url"),
        (with("description", json!("x".repeat(501))), 400, "description"),
    ];
    for (body, expected_status, named) in cases {
        let (status, answer) = app.send(Method::POST, "/api/v1/admin/suites", Some(&body)).await;
        assert_eq!(status, expected_status, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{message} names {named}");
        assert_no_secret(message, &[SECOND_SECRET, SECOND_AES_KEY]);
    }
    let (status, _) = app
        .send(Method::PATCH, &format!("/api/v1/admin/suites/{SUITE_ID}"), Some(&json!({"encoding_aes_key": "short"})))
        .await;
    assert_eq!(status, 400);
    let (_, listed) = app.api("/api/v1/admin/suites").await;
    assert_eq!(listed["suites"].as_array().map(Vec::len), Some(1));
    assert_eq!(audit(&app).await.len(), before, "nothing was audited: nothing changed");
    // The seeded suite still verifies with its own keys.
    let (status, _) =
        app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "t")).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_change_on_one_instance_reaches_another_within_five_seconds() {
    let db = TestDb::new();
    let first = TestApp::spawn(&db).await;
    let second = TestApp::spawn(&db).await;
    let new_token = "RotatedToken7";
    let new_aes_key = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";
    let patch = json!({"callback_token": new_token, "encoding_aes_key": new_aes_key});
    let (status, body) = first.send(Method::PATCH, &format!("/api/v1/admin/suites/{SUITE_ID}"), Some(&patch)).await;
    assert_eq!(status, 200, "{body}");
    let changed_at = Instant::now();
    let new_keys = CallbackKeys::new(new_token, new_aes_key).expect("keys");
    let ticket = suite_ticket_xml(SUITE_ID, "after-rotation");
    loop {
        let (status, _) = second.post_callback(&command_path(SUITE_ID), &new_keys, SUITE_ID, &ticket).await;
        if status == 200 {
            break;
        }
        assert!(changed_at.elapsed() < Duration::from_secs(5), "the other instance still refuses the new keys");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = second.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &ticket).await;
    assert_eq!(status, 401, "the old keys no longer verify");
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_plaintext_naming_another_suite_is_refused_and_stored_nowhere() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let before = app.events().await.len();
    let forged = suite_ticket_xml("wwsomeoneelse", "ticket");
    let (status, body) = app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &forged).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(app.events().await.len(), before);
    assert_eq!(db.count("SELECT COUNT(*) FROM events"), i64::try_from(before).expect("small"));
    app.stop().await;
}

#[tokio::test]
async fn no_secret_is_stored_in_the_clear() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    app.install(&fake, "wpCorpSeal01", "Corp Sealed").await;
    for path in [
        format!("/api/v1/suites/{SUITE_ID}/token?refresh=true"),
        format!("/api/v1/providers/{PROVIDER_CORPID}/token"),
        format!("/api/v1/suites/{SUITE_ID}/corps/wpCorpSeal01/token?refresh=true"),
    ] {
        assert_eq!(app.api(&path).await.0, 200, "{path}");
    }
    let conversion = json!({"userids": ["zhangsan", "lisi"]});
    let (status, body) = app
        .send(Method::POST, &format!("/api/v1/suites/{SUITE_ID}/corps/wpCorpSeal01/open_userids"), Some(&conversion))
        .await;
    assert_eq!(status, 200, "{body}");
    let hook = json!({"url": "http://127.0.0.1:9/hook"});
    let (status, created) = app.send(Method::POST, "/api/v1/webhooks", Some(&hook)).await;
    assert_eq!(status, 201, "{created}");
    let webhook_secret = created["secret"].as_str().expect("secret shown once").to_owned();
    // A second ticket replaces the first: both have been stored at some point.
    app.push_ticket(&fake).await;
    app.stop().await;
    fake.stop().await;

    let mut secrets = fake.issued_secrets();
    assert!(secrets.len() >= 5, "tickets, codes and tokens were issued: {secrets:?}");
    secrets.extend(
        [SUITE_SECRET, PROVIDER_SECRET, SUITE_TOKEN, SUITE_AES_KEY, PROVIDER_TOKEN, PROVIDER_AES_KEY]
            .map(str::to_owned),
    );
    secrets.push(webhook_secret);
    let raw = db.raw_contents();
    assert!(raw.len() > 4096, "the database was read");
    for secret in &secrets {
        let found = raw.windows(secret.len()).any(|window| window == secret.as_bytes());
        assert!(!found, "stored in the clear: {secret}");
    }
    if let wecom_provider::config::DatabaseUrl::Sqlite(path) = &db.url {
        use std::os::unix::fs::PermissionsExt;
        let key_file = path.with_extension("key");
        let mode = std::fs::metadata(&key_file).expect("the key file was created").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let key = std::fs::read_to_string(&key_file).expect("readable");
        assert!(!raw.windows(key.trim().len()).any(|w| w == key.trim().as_bytes()), "the key is not in the database");
    }
}

#[tokio::test]
async fn rows_stored_before_sealing_are_sealed_on_start_and_the_seed_never_overwrites() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    // The secret is changed at runtime; the environment still names the old one.
    fake.add_suite(PROVIDER_CORPID, SUITE_ID, "changed-at-runtime");
    let patch = json!({"secret": "changed-at-runtime"});
    let (status, _) = app.send(Method::PATCH, &format!("/api/v1/admin/suites/{SUITE_ID}"), Some(&patch)).await;
    assert_eq!(status, 200);
    app.stop().await;
    // As a round-1 database would hold it: the provider secret in the clear, no sealing record.
    db.execute(&format!("UPDATE providers SET provider_secret = '{PROVIDER_SECRET}'; DELETE FROM sealing_state;"));
    let app = spawn_against(&db, &fake, |_| {}).await;
    fake.add_suite(PROVIDER_CORPID, SUITE_ID, "changed-at-runtime");
    assert_eq!(db.count("SELECT COUNT(*) FROM providers WHERE provider_secret LIKE 'wps1:%'"), 1, "sealed on start");
    assert_eq!(app.api(&format!("/api/v1/providers/{PROVIDER_CORPID}/token")).await.0, 200);
    let (status, body) = app.api(&format!("/api/v1/suites/{SUITE_ID}/token?refresh=true")).await;
    assert_eq!(status, 200, "the runtime secret survived a start with the old environment: {body}");
    app.stop().await;
    fake.stop().await;
}

/// The binary with the test environment (and `adjust`), its output once it exits.
fn cli(db: &TestDb, adjust: impl FnOnce(&mut HashMap<String, String>), args: &[&str]) -> Output {
    let mut env = env_for(db);
    adjust(&mut env);
    Command::new(env!("CARGO_BIN_EXE_wecom-provider"))
        .args(args)
        .env_clear()
        .envs(&env)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn apply_creates_then_changes_nothing_and_refuses_an_unknown_field() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("suite_secret");
    std::fs::write(&secret_file, format!("{SECOND_SECRET}\n")).expect("written");
    let declaration = |name: &str| {
        format!(
            "[[providers]]\nprovider_corpid = \"wwprovider2\"\nsecret = \"env:APPLY_PROVIDER_SECRET\"\n\n\
             [[suites]]\nsuite_id = \"{SECOND_SUITE}\"\nprovider_corpid = \"wwprovider2\"\nkind = \"login\"\n\
             name = \"{name}\"\nsecret = \"file:{}\"\ncallback_token = \"{SECOND_TOKEN}\"\n\
             encoding_aes_key = \"env:APPLY_AES_KEY\"\n",
            secret_file.display()
        )
    };
    let file = dir.path().join("apply.toml");
    let with_secrets = |env: &mut HashMap<String, String>| {
        env.insert("APPLY_PROVIDER_SECRET".into(), "applied-provider-secret".into());
        env.insert("APPLY_AES_KEY".into(), SECOND_AES_KEY.into());
    };
    std::fs::write(&file, declaration("登录")).expect("written");
    let path = file.to_string_lossy().into_owned();
    let first = cli(&db, with_secrets, &["apply", &path]);
    assert!(first.status.success(), "{first:?}");
    let out = stdout(&first);
    assert!(out.contains("created provider wwprovider2") && out.contains("created suite wwsuite0002"), "{out}");
    assert_no_secret(&out, &[SECOND_SECRET, SECOND_AES_KEY, "applied-provider-secret"]);

    let again = cli(&db, with_secrets, &["apply", &path]);
    assert!(stdout(&again).contains("0 changed, 2 unchanged"), "{}", stdout(&again));

    std::fs::write(&file, declaration("登录应用")).expect("written");
    let renamed = cli(&db, with_secrets, &["apply", &path]);
    assert!(stdout(&renamed).contains("updated suite wwsuite0002: name"), "{}", stdout(&renamed));

    let audited = db.count("SELECT COUNT(*) FROM audit_log");
    std::fs::write(&file, declaration("x").replace("kind = \"login\"", "kind = \"login\"\nsuite_secret = \"x\""))
        .expect("written");
    let refused = cli(&db, with_secrets, &["apply", &path]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("suite_secret"), "the field is named: {stderr}");
    assert_eq!(db.count("SELECT COUNT(*) FROM audit_log"), audited, "nothing changed");

    let listed = cli(&db, |_| {}, &["suites", "list"]);
    let out = stdout(&listed);
    assert!(out.contains("wwsuite0002\tlogin\tenabled") && out.contains("name=登录应用"), "{out}");
    assert_no_secret(&out, &[SECOND_SECRET, SECOND_AES_KEY, SUITE_SECRET, SUITE_AES_KEY]);
}

#[tokio::test]
async fn suites_and_providers_are_managed_from_the_command_line() {
    let db = TestDb::new();
    let added = cli(
        &db,
        |_| {},
        &[
            "suites",
            "add",
            "--suite-id",
            SECOND_SUITE,
            "--provider",
            PROVIDER_CORPID,
            "--kind",
            "customized_template",
            "--secret",
            "env:WECOM_SUITE_SECRET",
            "--callback-token",
            SECOND_TOKEN,
            "--encoding-aes-key",
            SECOND_AES_KEY,
        ],
    );
    assert!(added.status.success(), "{added:?}");
    assert!(stdout(&added).contains("/callback/wwsuite0002/data"), "{}", stdout(&added));
    let duplicate = cli(
        &db,
        |_| {},
        &[
            "suites",
            "add",
            "--suite-id",
            SECOND_SUITE,
            "--provider",
            PROVIDER_CORPID,
            "--kind",
            "login",
            "--secret",
            "x",
            "--callback-token",
            SECOND_TOKEN,
            "--encoding-aes-key",
            SECOND_AES_KEY,
        ],
    );
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));
    let disabled = cli(&db, |_| {}, &["suites", "disable", SECOND_SUITE]);
    assert!(stdout(&disabled).contains("updated suite wwsuite0002: enabled"), "{}", stdout(&disabled));
    let listed = stdout(&cli(&db, |_| {}, &["suites", "list"]));
    assert!(listed.contains("wwsuite0002\tcustomized_template\tdisabled"), "{listed}");
    let providers = stdout(&cli(&db, |_| {}, &["providers", "list"]));
    assert!(providers.starts_with(PROVIDER_CORPID), "{providers}");
    let refused = cli(&db, |_| {}, &["providers", "remove", PROVIDER_CORPID]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("still has 2 suites"));
    let removed = cli(&db, |_| {}, &["suites", "remove", SECOND_SUITE]);
    assert!(removed.status.success(), "{removed:?}");
    let actors = db.count("SELECT COUNT(*) FROM audit_log WHERE actor = 'cli'");
    assert_eq!(actors, 3, "add, disable and remove were audited as the command line");
}

#[tokio::test]
async fn keys_rotate_reseals_while_the_service_runs_and_a_wrong_key_stops_the_start() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("master.key");
    let generated = cli(&db, |_| {}, &["keys", "generate"]);
    std::fs::write(&key_file, stdout(&generated)).expect("key file written");
    let key_path = key_file.to_string_lossy().into_owned();
    let with_file = |env: &mut HashMap<String, String>| {
        env.remove("MASTER_KEY");
        env.insert("MASTER_KEY_FILE".into(), key_path.clone());
    };
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, with_file).await;
    app.push_ticket(&fake).await;
    app.install(&fake, "wpCorpRot001", "Corp Rotate").await;

    let rotated = cli(&db, with_file, &["keys", "rotate"]);
    assert!(rotated.status.success(), "{rotated:?}");
    let out = stdout(&rotated);
    let ids = out.lines().next().and_then(|line| line.split(": ").nth(1)).expect("rotated line");
    let (old, new) = ids.split_once(" -> ").expect("from -> to");
    assert_ne!(old, new);
    for (table, column) in [("suites", "suite_secret"), ("corps", "permanent_code"), ("tokens", "access_token")] {
        let under_old = db.count(&format!("SELECT COUNT(*) FROM {table} WHERE {column} LIKE 'wps1:{old}:%'"));
        assert_eq!(under_old, 0, "{table}.{column} re-sealed");
        let under_new = db.count(&format!("SELECT COUNT(*) FROM {table} WHERE {column} LIKE 'wps1:{new}:%'"));
        assert!(under_new > 0, "{table}.{column} under the new key");
    }
    // The running service opens what was re-sealed and seals under the new key.
    let (status, body) = app.api(&format!("/api/v1/suites/{SUITE_ID}/corps/wpCorpRot001/token?refresh=true")).await;
    assert_eq!(status, 200, "{body}");
    app.push_ticket(&fake).await;
    assert_eq!(db.count(&format!("SELECT COUNT(*) FROM suites WHERE ticket LIKE 'wps1:{new}:%'")), 1);
    app.stop().await;
    fake.stop().await;

    // Another key cannot open them: the start stops with one line saying so.
    let other = dir.path().join("other.key");
    std::fs::write(&other, stdout(&cli(&db, |_| {}, &["keys", "generate"]))).expect("written");
    let other_path = other.to_string_lossy().into_owned();
    let refused = cli(
        &db,
        |env| {
            env.remove("MASTER_KEY");
            env.insert("MASTER_KEY_FILE".into(), other_path);
        },
        &["serve"],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|line| !line.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("does not open the stored secrets"), "{stderr}");
}

#[tokio::test]
async fn the_start_prints_the_urls_to_paste_into_wecom() {
    let db = TestDb::new();
    let app = TestApp::spawn_binary(&db, |_| {}).await;
    let output = eventually("the start-up lines", || async {
        let output = app.output();
        output.contains("data_url").then_some(output)
    })
    .await;
    for url in [
        format!("/callback/{SUITE_ID}/command"),
        format!("/callback/{SUITE_ID}/data"),
        format!("/callback/provider/{PROVIDER_CORPID}"),
    ] {
        assert!(output.contains(&url), "{url} in {output}");
    }
    app.stop().await;
    let db = TestDb::new();
    let bare = TestApp::spawn_binary(&db, |env| {
        env.retain(|name, _| !name.starts_with("WECOM_") && name != "ADMIN_TOKEN");
        env.insert("WECOM_SUITE_ID".into(), String::new());
        env.insert("WECOM_PROVIDER_CORPID".into(), String::new());
    })
    .await;
    let output = eventually("the warnings", || async {
        let output = bare.output();
        output.contains("/api/v1 is disabled").then_some(output)
    })
    .await;
    assert!(output.contains("no provider or suite is configured"), "{output}");
    bare.stop().await;
}

#[tokio::test]
async fn a_provider_added_at_runtime_receives_its_system_events_and_hands_out_its_token() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    let provider = "wwprovider0002";
    fake.add_provider(provider, "second-provider-secret");
    let body = json!({
        "provider_corpid": provider,
        "secret": "second-provider-secret",
        "callback_token": SECOND_TOKEN,
        "encoding_aes_key": SECOND_AES_KEY,
    });
    let (status, created) = app.send(Method::POST, "/api/v1/admin/providers", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["has_callback"], true);
    assert_no_secret(&created.to_string(), &["second-provider-secret", SECOND_TOKEN, SECOND_AES_KEY]);
    let event = format!(
        "<xml><ToUserName>{provider}</ToUserName><CreateTime>1700000000</CreateTime><MsgType>event</MsgType><Event>change_app_admin</Event></xml>"
    );
    let path = format!("/callback/provider/{provider}");
    let (status, answer) = app.post_callback(&path, &second_keys(), provider, &event).await;
    assert_eq!((status, answer.as_str()), (200, "success"));
    let (status, token) = app.api(&format!("/api/v1/providers/{provider}/token")).await;
    assert_eq!(status, 200, "{token}");
    assert!(fake.is_valid_token(token["access_token"].as_str().expect("token")));
    // New keys: the old ones stop verifying at once on this instance.
    let patch = json!({"callback_token": "OtherToken9"});
    let (status, updated) = app.send(Method::PATCH, &format!("/api/v1/admin/providers/{provider}"), Some(&patch)).await;
    assert_eq!((status, updated["changed"].clone()), (200, json!(["callback_token"])), "{updated}");
    assert_eq!(app.post_callback(&path, &second_keys(), provider, &event).await.0, 401);
    let other = CallbackKeys::new("OtherToken9", SECOND_AES_KEY).expect("keys");
    assert_eq!(app.post_callback(&path, &other, provider, &event).await.0, 200);
    app.stop().await;
    fake.stop().await;
}
