//! The event pipeline: feed filters and long polls, effects in parallel per corp,
//! retention, and restarts (SIGTERM, SIGKILL) that never spend an auth code twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use wecom_provider::app;
use wecom_provider::events::retention::Retention;

use crate::fake_wecom::{FakeWecom, Injection};
use crate::helpers::*;

fn corp_path(app: &TestApp, corpid: &str) -> String {
    format!("/api/v1/suites/{}/corps/{corpid}", app.seeded_suite)
}

fn kinds(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|e| e["kind"].as_str()).map(str::to_owned).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_feed_filters_by_kind_suite_and_corp_and_rejects_bad_filters() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    app.install(&fake, "wpFilterA01", "A").await;
    app.install(&fake, "wpFilterB01", "B").await;
    app.settled().await;

    let (status, page) = app.api("/api/v1/events?kind=corp_authorized&kind=suite_ticket").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(kinds(&page), ["suite_ticket", "corp_authorized", "corp_authorized"]);
    let (_, page) = app.api("/api/v1/events?corpid=wpFilterB01").await;
    assert_eq!(kinds(&page), ["create_auth", "corp_authorized"], "{page}");
    let (_, page) = app.api(&format!("/api/v1/events?suite_id={}&kind=create_auth", app.seeded_suite)).await;
    assert_eq!(kinds(&page), ["create_auth", "create_auth"]);
    let (_, page) = app.api("/api/v1/events?suite_id=wwNoSuchSuite").await;
    assert_eq!(kinds(&page), Vec::<String>::new());
    // A well-formed kind never seen yet is a valid filter.
    let (status, page) = app.api("/api/v1/events?kind=license_pay_success").await;
    assert_eq!((status, page["events"].as_array().map(Vec::len)), (200, Some(0)));

    let before = app.events().await.len();
    let long_kind = format!("kind={}", "k".repeat(65));
    for bad in
        ["kind=", "kind=create-auth", "kind=a%20b", long_kind.as_str(), "wait=61", "wait=-1", "after=abc", "limit=0"]
    {
        let (status, body) = app.api(&format!("/api/v1/events?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{bad}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.len() < 100), "{body}");
    }
    assert_eq!(app.events().await.len(), before, "bad queries change nothing");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_a_matching_event_is_committed() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let (status, _) =
        app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "t1")).await;
    assert_eq!(status, 200);
    let after = app.events().await.last().and_then(|e| e["id"].as_i64()).expect("an event");

    // Nothing new: the poll ends when its wait does, with an empty page.
    let started = Instant::now();
    let (status, page) = app.api(&format!("/api/v1/events?after={after}&wait=1")).await;
    assert_eq!((status, page["events"].as_array().map(Vec::len)), (200, Some(0)), "{page}");
    assert_eq!(page["next_after"], after);
    assert!(started.elapsed() >= Duration::from_millis(950), "waited {:?}", started.elapsed());

    // A non-matching event does not end the poll; a matching one does, at once.
    let poll_path = format!("/api/v1/events?after={after}&wait=20&kind=change_contact");
    let poll = app.api(&poll_path);
    let push = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "t2")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let xml = format!(
            "<xml><SuiteId>{SUITE_ID}</SuiteId><AuthCorpId>wpPollCorp</AuthCorpId><InfoType>change_contact</InfoType><TimeStamp>1700000001</TimeStamp><ChangeType>create_user</ChangeType><UserID>u1</UserID></xml>"
        );
        let (status, _) = app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &xml).await;
        assert_eq!(status, 200);
        Instant::now()
    };
    let started = Instant::now();
    let ((status, page), pushed_at) = tokio::join!(poll, push);
    let answered_at = Instant::now();
    assert_eq!(status, 200);
    assert_eq!(kinds(&page), ["change_contact"], "{page}");
    assert_eq!(page["events"][0]["corpid"], "wpPollCorp");
    assert!(answered_at.duration_since(pushed_at) < Duration::from_secs(1), "answered promptly");
    assert!(started.elapsed() < Duration::from_secs(5));
    app.stop().await;
}

#[tokio::test]
async fn a_callback_signed_before_the_retention_window_is_refused_and_not_stored() {
    let db = TestDb::new();
    let app = TestApp::spawn_with(&db, Default::default(), |env| {
        env.insert("EVENT_RETENTION_DAYS".into(), "7".into());
    })
    .await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let old = Sealed::signed_at(&suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "replayed"), now - 8 * 86_400);
    let (status, body) = app.post_raw(&format!("{}?{}", command_path(SUITE_ID), old.query()), old.body()).await;
    assert_eq!((status, body.as_str()), (400, "stale timestamp"));
    let recent = Sealed::signed_at(&suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "fresh"), now - 6 * 86_400);
    let (status, _) = app.post_raw(&format!("{}?{}", command_path(SUITE_ID), recent.query()), recent.body()).await;
    assert_eq!(status, 200);
    let events = app.events().await;
    assert_eq!(events.len(), 1, "only the recent callback is stored: {events:?}");
    app.stop().await;
}

#[tokio::test]
async fn retention_prunes_old_done_events_and_keeps_pending_and_failed_ones() {
    let db = TestDb::new();
    // The app's own pruner keeps ten years, so only the explicit passes below prune.
    let options = wecom_provider::app::StartOptions { run_worker: false, ..Default::default() };
    let app = TestApp::spawn_with(&db, options, |env| {
        env.insert("EVENT_RETENTION_DAYS".into(), "3650".into());
    })
    .await;
    let (status, _) =
        app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "new")).await;
    assert_eq!(status, 200);
    let day_ms: i64 = 86_400_000;
    let old = wecom_provider::store::now_ms() - 31 * day_ms;
    for (index, status) in ["done", "done", "pending", "failed"].iter().enumerate() {
        db.execute(&format!(
            "INSERT INTO events (provider_corpid, suite_id, kind, dedupe_key, fields, received_at, status) \
             VALUES ('{PROVIDER_CORPID}', '{SUITE_ID}', 'old_{status}', 'old-{index}', '{{}}', {old}, '{status}')"
        ));
    }
    let store = app::open_sealed(&config_from(&env_for(&db))).await.expect("database opens");
    let pruned = Retention::days(30).prune(&store).await.expect("prune runs");
    assert_eq!(pruned, 2);
    let mut left: Vec<String> =
        app.events().await.iter().filter_map(|e| e["kind"].as_str()).map(str::to_owned).collect();
    left.sort();
    assert_eq!(left, ["old_failed", "old_pending", "suite_ticket"]);
    assert_eq!(Retention::days(30).prune(&store).await.expect("prune runs"), 0, "nothing more to prune");
    app.stop().await;
}

/// One corp whose effect keeps failing waits alone: the other corp's events go on,
/// and the failing corp's later events wait behind its first, in order.
#[tokio::test]
async fn a_failing_corp_holds_back_only_its_own_events() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    app.install(&fake, "wpStuckCorp", "Stuck").await;
    app.install(&fake, "wpFreeCorp1", "Free").await;
    app.settled().await;

    fake.set_busy("wpStuckCorp", true);
    app.command(&auth_event_xml(&app.seeded_suite, "change_auth", "wpStuckCorp", 1_700_000_201)).await;
    app.command(&auth_event_xml(&app.seeded_suite, "cancel_auth", "wpStuckCorp", 1_700_000_202)).await;
    fake.rename_corp("wpFreeCorp1", "Free Renamed");
    app.command(&auth_event_xml(&app.seeded_suite, "change_auth", "wpFreeCorp1", 1_700_000_203)).await;

    eventually("the free corp's change is applied", || async {
        let (_, corp) = app.api(&corp_path(&app, "wpFreeCorp1")).await;
        (corp["corp_name"] == "Free Renamed").then_some(())
    })
    .await;
    let stuck = eventually("the stuck corp's first attempt failed", || async {
        let (_, page) = app.api("/api/v1/events?corpid=wpStuckCorp&kind=change_auth&kind=cancel_auth").await;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        events.first().is_some_and(|first| first["attempts"].as_i64() >= Some(1)).then_some(events)
    })
    .await;
    assert_eq!(stuck.len(), 2);
    assert_eq!(stuck[0]["status"], "pending", "{stuck:?}");
    assert!(stuck[0]["last_error"].as_str().is_some_and(|e| e.contains("-1")), "{stuck:?}");
    assert_eq!(
        (stuck[1]["status"].as_str(), stuck[1]["attempts"].as_i64()),
        (Some("pending"), Some(0)),
        "waits, untried"
    );
    assert_eq!(app.corp("wpStuckCorp").await["status"], "active", "the cancel has not overtaken the change");

    fake.set_busy("wpStuckCorp", false);
    eventually("the stuck corp's events apply in order", || async {
        let (_, corp) = app.api(&corp_path(&app, "wpStuckCorp")).await;
        (corp["status"] == "cancelled").then_some(())
    })
    .await;
    let events = app.settled().await;
    let order: Vec<&str> = events
        .iter()
        .filter(|e| {
            e["corpid"] == "wpStuckCorp"
                && e["kind"].as_str().is_some_and(|k| k.starts_with("corp_auth_changed") || k == "corp_cancelled")
        })
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(order, ["corp_auth_changed", "corp_cancelled"]);
    app.stop().await;
    fake.stop().await;
}

/// Many installs at once: exchanges run side by side, at most EFFECT_CONCURRENCY.
#[tokio::test]
async fn installs_of_different_corps_run_side_by_side() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |env| {
        env.insert("EFFECT_CONCURRENCY".into(), "8".into());
    })
    .await;
    app.push_ticket(&fake).await;
    // Slow enough that all sixteen are queued while the first eight still wait.
    for _ in 0..16 {
        fake.inject("service/v2/get_permanent_code", Injection::Delay(Duration::from_secs(2)));
    }
    for index in 0..16 {
        let code = fake.new_auth_code(&app.seeded_suite, &format!("wpPar{index:04}"), "Parallel");
        app.command(&create_auth_xml(&app.seeded_suite, &code, 1_700_000_100 + index)).await;
    }
    let events = app.settled().await;
    assert_eq!(events.iter().filter(|e| e["kind"] == "corp_authorized").count(), 16);
    assert_eq!(fake.most_in_flight("service/v2/get_permanent_code"), 8, "eight exchanges at once, never more");
    assert!(fake.code_presentations().values().all(|times| *times == 1));
    app.stop().await;
    fake.stop().await;
}

/// Starts the binary against the fake, with one effect at a time so that queued
/// installs are still pending when it dies.
async fn serial_binary(db: &TestDb, fake: &FakeWecom, extra: &[(&str, &str)]) -> TestApp {
    let base = fake.base.clone();
    let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let app = TestApp::spawn_binary(db, |env| {
        env.insert("WECOM_API_BASE".into(), base);
        env.insert("EFFECT_CONCURRENCY".into(), "1".into());
        env.extend(extra);
    })
    .await;
    fake.add_provider(&app.seeded_provider, PROVIDER_SECRET);
    fake.add_suite(&app.seeded_provider, &app.seeded_suite, SUITE_SECRET);
    app
}

async fn restarted(db: &TestDb, fake: &FakeWecom) -> (TestApp, Instant) {
    let base = fake.base.clone();
    let app = TestApp::spawn_binary(db, |env| {
        env.insert("WECOM_API_BASE".into(), base);
    })
    .await;
    eventually("the new process answers /healthz", || async {
        let (status, _) = app.get_raw("/healthz").await;
        (status == 200).then_some(())
    })
    .await;
    (app, Instant::now())
}

/// Installs `corpids` by create_auth: the first is the slow one in flight.
async fn queue_installs(app: &TestApp, fake: &FakeWecom, corpids: &[&str]) -> HashMap<String, String> {
    let mut codes = HashMap::new();
    for (index, corpid) in corpids.iter().enumerate() {
        let code = fake.new_auth_code(&app.seeded_suite, corpid, corpid);
        app.command(&create_auth_xml(&app.seeded_suite, &code, 1_700_000_100 + i64::try_from(index).expect("small")))
            .await;
        codes.insert((*corpid).to_owned(), code);
        if index == 0 {
            eventually("the first exchange is in flight", || async {
                (fake.calls("service/v2/get_permanent_code") == 1).then_some(())
            })
            .await;
        }
    }
    codes
}

fn assert_no_code_sent_twice(fake: &FakeWecom) {
    let presented = fake.code_presentations();
    assert!(presented.values().all(|times| *times == 1), "an auth code was sent twice: {presented:?}");
}

#[tokio::test]
async fn sigkill_mid_exchange_loses_that_install_only_and_never_resends_its_code() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = serial_binary(&db, &fake, &[]).await;
    app.push_ticket(&fake).await;
    // The first exchange hangs; WeCom may or may not have used the code.
    fake.inject("service/v2/get_permanent_code", Injection::Delay(Duration::from_secs(30)));
    queue_installs(&app, &fake, &["wpKillSlow1", "wpKillNext1", "wpKillNext2"]).await;
    app.stop().await; // SIGKILL

    let (app, ready_at) = restarted(&db, &fake).await;
    for corpid in ["wpKillNext1", "wpKillNext2"] {
        app.corp(corpid).await;
    }
    let resumed = ready_at.elapsed();
    assert!(resumed < Duration::from_secs(2) + Duration::from_millis(500), "other corps resumed after {resumed:?}");
    let lost = eventually("the lost install is reported", || async {
        let (_, page) = app.api("/api/v1/events?kind=corp_auth_lost").await;
        page["events"].as_array().and_then(|events| events.first().cloned())
    })
    .await;
    assert!(ready_at.elapsed() < Duration::from_secs(15), "the dead claim lapsed within 10 s");
    assert_eq!(lost["fields"]["install_path"], "callback");
    assert!(lost["fields"]["reason"].as_str().is_some_and(|r| r.contains("install the app again")), "{lost}");
    let events = app.settled().await;
    assert_eq!(events.iter().filter(|e| e["kind"] == "corp_auth_lost").count(), 1);
    assert!(events.iter().all(|e| e["status"] == "done"), "{events:?}");
    assert_no_code_sent_twice(&fake);
    assert_eq!(fake.calls("service/v2/get_permanent_code"), 3);
    let (status, _) = app.api(&corp_path(&app, "wpKillSlow1")).await;
    assert_eq!(status, 404, "the lost corp was never stored");
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn sigterm_lets_the_exchange_in_flight_finish_and_takes_no_new_effect() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = serial_binary(&db, &fake, &[("SHUTDOWN_GRACE_SECONDS", "10")]).await;
    app.push_ticket(&fake).await;
    // Answers late, within the grace period.
    fake.inject("service/v2/get_permanent_code", Injection::Delay(Duration::from_secs(3)));
    queue_installs(&app, &fake, &["wpTermSlow1", "wpTermNext1", "wpTermNext2"]).await;
    let (status, took) = app.terminate().await;
    assert!(status.success(), "a clean exit: {status:?}");
    assert!(took < Duration::from_secs(10), "exited within the grace period: {took:?}");
    assert_eq!(fake.calls("service/v2/get_permanent_code"), 1, "no new effect was taken after SIGTERM");

    let (app, ready_at) = restarted(&db, &fake).await;
    assert_eq!(app.corp("wpTermSlow1").await["status"], "active", "the exchange in flight finished");
    for corpid in ["wpTermNext1", "wpTermNext2"] {
        assert_eq!(app.corp(corpid).await["status"], "active");
    }
    assert!(
        ready_at.elapsed() < Duration::from_secs(2) + Duration::from_millis(500),
        "resumed after {:?}",
        ready_at.elapsed()
    );
    let events = app.settled().await;
    assert_eq!(events.iter().filter(|e| e["kind"] == "corp_authorized").count(), 3);
    assert_no_code_sent_twice(&fake);
    app.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn sigterm_past_the_grace_period_and_a_lost_answer_are_reported_never_resent() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = serial_binary(&db, &fake, &[("SHUTDOWN_GRACE_SECONDS", "1")]).await;
    app.push_ticket(&fake).await;
    // The first answer comes too late for the grace period; the second is lost after
    // WeCom used the code (HTTP 500 after the work).
    fake.inject("service/v2/get_permanent_code", Injection::Delay(Duration::from_secs(20)));
    fake.inject("service/v2/get_permanent_code", Injection::DelayThen500(Duration::from_millis(200)));
    queue_installs(&app, &fake, &["wpGraceSlow", "wpGraceLost", "wpGraceFine"]).await;
    let (status, took) = app.terminate().await;
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "the grace period bounds the stop: {took:?}");

    let (app, ready_at) = restarted(&db, &fake).await;
    let lost = eventually("both lost installs are reported", || async {
        let (_, page) = app.api("/api/v1/events?kind=corp_auth_lost").await;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        (events.len() == 2).then_some(events)
    })
    .await;
    assert!(ready_at.elapsed() < Duration::from_secs(15), "within 15 s: {:?}", ready_at.elapsed());
    assert!(lost.iter().all(|e| e["fields"]["install_path"] == "callback"));
    let (status, _) = app.api(&corp_path(&app, "wpGraceSlow")).await;
    assert_eq!(status, 404, "the install cut off by the shutdown was never stored");
    // The two queued installs run side by side after the restart: whichever drew the
    // lost answer is reported, the other is active.
    app.settled().await;
    let mut stored = 0;
    for corpid in ["wpGraceLost", "wpGraceFine"] {
        let (status, corp) = app.api(&corp_path(&app, corpid)).await;
        if status == 200 {
            assert_eq!(corp["status"], "active");
            stored += 1;
        }
    }
    assert_eq!(stored, 1, "one of the two queued installs succeeded");
    assert_no_code_sent_twice(&fake);
    app.stop().await;
    fake.stop().await;
}

/// Two instances on one database share the effects: each event applied once.
#[tokio::test]
async fn two_instances_share_the_effects_and_apply_each_once() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let first = spawn_against(&db, &fake, |_| {}).await;
    let second = spawn_against(&db, &fake, |_| {}).await;
    first.push_ticket(&fake).await;
    for _ in 0..24 {
        fake.inject("service/v2/get_permanent_code", Injection::Delay(Duration::from_millis(100)));
    }
    for index in 0..24 {
        let code = fake.new_auth_code(&first.seeded_suite, &format!("wpShared{index:03}"), "Shared");
        let app = if index % 2 == 0 { &first } else { &second };
        app.command(&create_auth_xml(&app.seeded_suite, &code, 1_700_000_100 + index)).await;
    }
    let events = first.settled().await;
    assert_eq!(events.iter().filter(|e| e["kind"] == "corp_authorized").count(), 24, "{events:?}");
    assert!(events.iter().all(|e| e["status"] == "done" && e["attempts"].as_i64() <= Some(1)), "{events:?}");
    assert_eq!(fake.calls("service/v2/get_permanent_code"), 24);
    assert_eq!(fake.calls("agent/get_admin_list"), 24, "no effect ran twice");
    assert_no_code_sent_twice(&fake);
    first.stop().await;
    second.stop().await;
    fake.stop().await;
}

/// On PostgreSQL instances append side by side, and readers page only up to the id
/// through which every append has committed: another instance's append in flight (a
/// lower id, its row not visible yet) is waited for, never passed, while this
/// instance's callback still answers within WeCom's deadline. SQLite has a single
/// writer and no such case.
#[tokio::test]
async fn an_append_in_flight_on_another_instance_is_waited_for_never_passed() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use diesel::{Connection, connection::SimpleConnection};

    let db = TestDb::new();
    let wecom_provider::config::DatabaseUrl::Postgres(url) = &db.url else {
        return;
    };
    let app = TestApp::spawn(&db).await;
    let mut other_instance = diesel::PgConnection::establish(url).expect("postgres answers");
    let lock = wecom_provider::store::events::EVENT_APPEND_LOCK_KEY;
    let now = wecom_provider::store::now_ms();
    other_instance
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock_shared({lock}); \
             INSERT INTO events (provider_corpid, kind, dedupe_key, fields, received_at, status) \
             VALUES ('wwOtherInstance', 'other_instance', 'in-flight', '{{}}', {now}, 'done')"
        ))
        .expect("the other instance's append starts");

    let answered = AtomicBool::new(false);
    let (path, keys, ticket) = (command_path(SUITE_ID), suite_keys(), suite_ticket_xml(SUITE_ID, "t1"));
    let callback = async {
        let started = Instant::now();
        let (status, _) = app.post_callback(&path, &keys, SUITE_ID, &ticket).await;
        (status, started.elapsed())
    };
    let feed = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let page = app.api("/api/v1/events?after=0").await;
        answered.store(true, Ordering::SeqCst);
        page
    };
    let commit_later = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let waited = !answered.load(Ordering::SeqCst);
        other_instance.batch_execute("COMMIT").expect("the other instance commits");
        waited
    };
    let ((status, took), (feed_status, page), waited) = tokio::join!(callback, feed, commit_later);
    assert_eq!(status, 200, "answered in {took:?}");
    assert_eq!(feed_status, 200, "{page}");
    assert!(waited, "the feed answered past an append in flight: {page}");
    assert_eq!(kinds(&page).first().map(String::as_str), Some("other_instance"), "{page}");
    let (_, page) = app.api("/api/v1/events?after=0").await;
    assert_eq!(kinds(&page), ["other_instance", "suite_ticket"], "{page}");
    app.stop().await;
}

/// The ids an append hands back (each callback's log line names its event by them)
/// are the rows' own, also when duplicates inside the batch interrupt it.
#[tokio::test]
async fn an_appended_batch_names_each_new_event_by_its_own_id() {
    use wecom_provider::store::events;

    let db = TestDb::new();
    let store = migrated_store(&db).await;
    let event = |name: &str| derived_event("id_check", name);
    let mut conn = store.connection().expect("a connection");
    events::append(&mut conn, &[event("a")]).expect("the first append");

    let batch = ["b", "c", "a", "d", "b", "e", "f"].map(event);
    let ids = events::append(&mut conn, &batch).expect("the batch");
    assert_eq!(ids.iter().map(Option::is_some).collect::<Vec<_>>(), [true, true, false, true, false, true, true]);
    let new_ids: Vec<_> = ids.iter().flatten().collect();
    assert!(new_ids.windows(2).all(|pair| pair[0] < pair[1]), "ids follow the batch's order: {new_ids:?}");
    for (sent, id) in batch.iter().zip(&ids) {
        let Some(id) = id else { continue };
        let row = events::find(&mut conn, *id).expect("a read").expect("the id names a row");
        assert_eq!(row.fields, sent.fields, "event {id:?}");
    }
}

/// PostgreSQL keeps the append statement prepared on its connection: parsed and
/// planned once, not for every batch (that was half of its CPU per commit).
#[tokio::test]
async fn postgres_parses_and_plans_the_append_once_per_connection() {
    use diesel::RunQueryDsl;
    use wecom_provider::store::events;

    #[derive(diesel::QueryableByName)]
    struct Prepared {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        statements: i64,
    }

    let db = TestDb::new();
    if !matches!(db.url, wecom_provider::config::DatabaseUrl::Postgres(_)) {
        return;
    }
    let store = migrated_store(&db).await;
    let event = |name: &str| derived_event("prepared_check", name);
    let mut conn = store.connection().expect("a connection");
    for batch in [&[event("a")][..], &[event("b"), event("c")], &[event("d"), event("a"), event("e")]] {
        events::append(&mut conn, batch).expect("an append");
    }
    let wecom_provider::store::Conn::Pg(pg) = &mut conn else { unreachable!("a PostgreSQL database") };
    let prepared: Prepared = diesel::sql_query(
        "SELECT count(*) AS statements FROM pg_prepared_statements \
         WHERE statement LIKE '%INSERT INTO events%' AND NOT from_sql",
    )
    .get_result(&mut **pg)
    .expect("a read");
    assert_eq!(prepared.statements, 1, "one prepared append for batches of any size");
}

/// The event store of `db`, migrated, as the service opens it.
async fn migrated_store(db: &TestDb) -> wecom_provider::store::Db {
    use wecom_provider::store::sealing::{MasterKey, Sealer};

    let sealer = Sealer::with_keys(vec![MasterKey::generate().0]).expect("a key");
    let store = wecom_provider::store::Db::open(&db.url, sealer).expect("the database opens");
    store.migrate().await.expect("migrations");
    store
}

/// A derived event of `kind` keyed by `name`, with `name` in its fields.
fn derived_event(kind: &str, name: &str) -> wecom_provider::store::events::NewEvent {
    wecom_provider::store::events::NewEvent::derived(
        &PROVIDER_CORPID.into(),
        &SUITE_ID.into(),
        None,
        kind,
        &[name],
        serde_json::json!({ "name": name }),
    )
}
