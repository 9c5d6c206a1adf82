//! The admin console: sign-in, sessions and CSRF over plain HTTP, and every page
//! driven in a real headless Chromium over chromedriver, with a screenshot of each
//! under `target/screenshots/`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::fake_wecom::FakeWecom;
use crate::helpers::*;

/// The console's client: no redirects followed, cookies carried by hand.
struct Browserless {
    base: String,
    client: reqwest::Client,
}

/// What a request answered.
struct Answer {
    status: u16,
    body: String,
    location: Option<String>,
    set_cookies: Vec<String>,
}

impl Answer {
    /// The value of cookie `name` set by this answer.
    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies.iter().find_map(|c| {
            c.split(';').next().and_then(|pair| pair.strip_prefix(&format!("{name}="))).map(str::to_owned)
        })
    }
}

/// The `value` of the first hidden `csrf` field of a page.
fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default().to_owned()
}

/// The text of the element with id `problem`.
fn problem_of(html: &str) -> Option<String> {
    let rest = html.split("id=\"problem\"").nth(1)?;
    Some(rest.split_once('>')?.1.split('<').next()?.to_owned())
}

impl Browserless {
    fn new(app: &TestApp) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        Browserless { base: app.base.clone(), client }
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let set_cookies =
            response.headers().get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
        Answer { status, body: response.text().await.unwrap_or_default(), location, set_cookies }
    }

    async fn get(&self, path: &str, session: Option<&str>) -> Answer {
        let mut request = self.client.get(format!("{}{path}", self.base)).header("Accept-Language", "en");
        if let Some(session) = session {
            request = request.header(COOKIE, format!("wecom_console={session}"));
        }
        Self::answer(request.send().await.expect("request")).await
    }

    async fn post(&self, path: &str, cookies: &str, form: &[(&str, &str)]) -> Answer {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Accept-Language", "en")
            .header(COOKIE, cookies)
            .form(form);
        Self::answer(request.send().await.expect("request")).await
    }

    /// Posts the sign-in form with `key`, as a browser that loaded it would.
    async fn sign_in(&self, key: &str) -> Answer {
        let form = self.get("/admin/login", None).await;
        assert_eq!(form.status, 200, "{}", form.body);
        let login_csrf = form.cookie("wecom_console_login").expect("the form's CSRF cookie");
        let csrf = csrf_of(&form.body);
        assert_eq!(csrf, login_csrf, "double-submit token");
        self.post("/admin/login", &format!("wecom_console_login={login_csrf}"), &[("csrf", &csrf), ("key", key)]).await
    }

    /// A signed-in session's cookie value.
    async fn session(&self) -> String {
        let answer = self.sign_in(ADMIN_TOKEN).await;
        assert_eq!((answer.status, answer.location.as_deref()), (303, Some("/admin")), "{}", answer.body);
        answer.cookie("wecom_console").expect("session cookie")
    }

    /// A POST of a signed-in session.
    async fn act(&self, session: &str, path: &str, form: &[(&str, &str)]) -> Answer {
        self.post(path, &format!("wecom_console={session}"), form).await
    }
}

/// A failed and a done event, stored as the worker leaves them.
fn seed_events(db: &TestDb) -> (i64, i64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    db.execute(&format!(
        "INSERT INTO events (provider_corpid, suite_id, corpid, kind, dedupe_key, fields, received_at, status, processed_at, attempts, last_error) VALUES \
         ('{PROVIDER_CORPID}', '{SUITE_ID}', 'wwConsoleCorp', 'change_contact', 'console-failed', '{{\"UserID\":\"failing-user\"}}', {now}, 'failed', {now}, 8, 'gave up: corp not active'), \
         ('{PROVIDER_CORPID}', '{SUITE_ID}', 'wwConsoleCorp', 'change_contact', 'console-done', '{{\"UserID\":\"done-user\"}}', {now}, 'done', {now}, 1, NULL)"
    ));
    let id = |key: &str| db.count(&format!("SELECT id FROM events WHERE dedupe_key = '{key}'"));
    (id("console-failed"), id("console-done"))
}

#[tokio::test]
async fn console_sign_in_answers_alike_for_every_wrong_key_and_is_slowed_then_throttled() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let console = Browserless::new(&app);
    let body = json!({"name": "reader", "scopes": ["tokens"]});
    let (status, created) = app.send(Method::POST, "/api/v1/admin/api-keys", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    let reader_key = created["key"].as_str().expect("key").to_owned();

    let unknown_shaped = format!("wpk_{}", "A".repeat(43));
    let mut problems = Vec::new();
    for key in ["not-a-key", unknown_shaped.as_str(), reader_key.as_str(), &ADMIN_TOKEN[1..]] {
        let started = Instant::now();
        let answer = console.sign_in(key).await;
        assert_eq!(answer.status, 401, "{key}: {}", answer.body);
        assert!(started.elapsed() >= Duration::from_millis(200), "a failure is slowed");
        assert!(answer.cookie("wecom_console").is_none(), "no session for {key}");
        problems.push(problem_of(&answer.body).expect("a message"));
    }
    assert!(problems.iter().all(|p| p == &problems[0]), "one answer for every wrong key: {problems:?}");
    assert_eq!(problems[0], "Cannot sign in with this key.");
    assert_eq!(db.count("SELECT COUNT(*) FROM console_sessions"), 0);

    // Repeated failures from one address: refused before the key is looked at.
    let mut throttled = None;
    for _ in 0..12 {
        let answer = console.sign_in("still-wrong").await;
        if answer.status == 429 {
            throttled = Some(answer);
            break;
        }
    }
    let throttled = throttled.expect("throttled after repeated failures");
    assert!(
        problem_of(&throttled.body).is_some_and(|p| p.starts_with("Too many failed attempts")),
        "{}",
        throttled.body
    );
    assert_eq!(console.sign_in(ADMIN_TOKEN).await.status, 429, "even the right key waits");
    app.stop().await;
}

#[tokio::test]
async fn the_session_cookie_is_httponly_strict_expiring_and_secure_behind_https() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let console = Browserless::new(&app);
    let answer = console.sign_in(ADMIN_TOKEN).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let cookie = answer.set_cookies.iter().find(|c| c.starts_with("wecom_console=")).expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=28800"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let session = answer.cookie("wecom_console").expect("value");
    assert_eq!(db.texts("SELECT actor AS t FROM console_sessions"), ["bootstrap"]);
    let stored = db.texts("SELECT id_hash AS t FROM console_sessions");
    assert!(!stored[0].contains(&session), "only the hash is stored");
    app.stop().await;

    let db = TestDb::new();
    let app = TestApp::spawn_with(&db, Default::default(), |env| {
        env.insert("PUBLIC_BASE_URL".into(), "https://console.example.com".into());
        env.insert("CONSOLE_SESSION_HOURS".into(), "1".into());
    })
    .await;
    let answer = Browserless::new(&app).sign_in(ADMIN_TOKEN).await;
    let cookie = answer.set_cookies.iter().find(|c| c.starts_with("wecom_console=")).expect("session cookie");
    assert!(cookie.contains("Secure") && cookie.contains("Max-Age=3600"), "{cookie}");
    app.stop().await;
}

#[tokio::test]
async fn an_expired_or_signed_out_session_opens_no_page() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let console = Browserless::new(&app);
    let answer = console.get("/admin", None).await;
    assert_eq!((answer.status, answer.location.as_deref()), (303, Some("/admin/login")));

    let session = console.session().await;
    let overview = console.get("/admin", Some(&session)).await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    db.execute("UPDATE console_sessions SET expires_at = 1");
    let answer = console.get("/admin", Some(&session)).await;
    assert_eq!((answer.status, answer.location.as_deref()), (303, Some("/admin/login")), "expired");

    let session = console.session().await;
    let page = console.get("/admin/audit", Some(&session)).await;
    let signed_out = console.act(&session, "/admin/logout", &[("csrf", &csrf_of(&page.body))]).await;
    assert_eq!((signed_out.status, signed_out.location.as_deref()), (303, Some("/admin/login")));
    assert!(signed_out.set_cookies.iter().any(|c| c.starts_with("wecom_console=;") && c.contains("Max-Age=0")));
    assert_eq!(console.get("/admin", Some(&session)).await.status, 303, "signed out");
    assert_eq!(db.count("SELECT COUNT(*) FROM console_sessions WHERE expires_at > 1"), 0, "its row is gone");
    app.stop().await;
}

#[tokio::test]
async fn a_console_form_without_or_with_a_stale_csrf_token_is_refused_and_changes_nothing() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let (failed_id, _) = seed_events(&db);
    let console = Browserless::new(&app);
    let old = console.session().await;
    let stale = csrf_of(&console.get("/admin/webhooks", Some(&old)).await.body);
    let session = console.session().await;
    let csrf = csrf_of(&console.get("/admin/webhooks", Some(&session)).await.body);
    assert_ne!(stale, csrf, "each session has its own token");

    let hook = [("url", "http://127.0.0.1:9/hook"), ("kinds", ""), ("suite_id", "")];
    for token in [None, Some(stale.as_str()), Some("")] {
        let mut form = hook.to_vec();
        if let Some(token) = token {
            form.push(("csrf", token));
        }
        let answer = console.act(&session, "/admin/webhooks", &form).await;
        assert_eq!(answer.status, 403, "{token:?}: {}", answer.body);
        assert!(problem_of(&answer.body).is_some_and(|p| p.contains("nothing was changed")), "{}", answer.body);
        let replay = console.act(&session, &format!("/admin/events/{failed_id}/replay"), &form).await;
        assert_eq!(replay.status, 403);
    }
    assert_eq!(db.count("SELECT COUNT(*) FROM webhooks"), 0, "no webhook made");
    assert_eq!(db.texts(&format!("SELECT status AS t FROM events WHERE id = {failed_id}")), ["failed"]);
    assert_eq!(db.count("SELECT COUNT(*) FROM audit_log WHERE action = 'event.replay'"), 0);
    let refused = console.act(&session, "/admin/logout", &[("csrf", &stale)]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(console.get("/admin", Some(&session)).await.status, 200, "still signed in");

    let mut form = hook.to_vec();
    form.push(("csrf", &csrf));
    let created = console.act(&session, "/admin/webhooks", &form).await;
    assert_eq!((created.status, created.location.as_deref()), (303, Some("/admin/webhooks?done=webhook_created")));
    assert_eq!(db.count("SELECT COUNT(*) FROM webhooks"), 1);
    let id = db.texts("SELECT id AS t FROM webhooks").remove(0);
    let delete = format!("/admin/webhooks/{id}/delete");
    assert_eq!(console.act(&session, &delete, &[("csrf", &stale)]).await.status, 403);
    assert_eq!(db.count("SELECT COUNT(*) FROM webhooks"), 1, "not deleted");
    assert_eq!(console.act(&session, &delete, &[("csrf", &csrf)]).await.status, 303);
    assert_eq!(db.count("SELECT COUNT(*) FROM webhooks"), 0);

    // The sign-in form has its own token.
    let answer =
        console.post("/admin/login", "wecom_console_login=abc", &[("csrf", "xyz"), ("key", ADMIN_TOKEN)]).await;
    assert_eq!(answer.status, 403);
    assert!(answer.cookie("wecom_console").is_none());
    app.stop().await;
}

#[tokio::test]
async fn replaying_an_event_that_is_not_failed_says_so_and_a_failed_one_is_queued_and_audited() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let (failed_id, done_id) = seed_events(&db);
    let console = Browserless::new(&app);
    let session = console.session().await;
    let page = console.get(&format!("/admin/events/{done_id}"), Some(&session)).await;
    assert!(!page.body.contains("id=\"replay\""), "no replay button on a done event");
    let csrf = csrf_of(&page.body);

    let answer = console.act(&session, &format!("/admin/events/{done_id}/replay"), &[("csrf", &csrf)]).await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert_eq!(
        problem_of(&answer.body).as_deref(),
        Some("Only a failed event can be replayed; this one has not failed, so nothing was changed.")
    );
    assert_eq!(db.texts(&format!("SELECT status AS t FROM events WHERE id = {done_id}")), ["done"]);
    let (status, body) = app.send(Method::POST, &format!("/api/v1/events/{done_id}/replay"), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_failed")), "{body}");

    let page = console.get(&format!("/admin/events/{failed_id}"), Some(&session)).await;
    assert!(page.body.contains("id=\"replay\"") && page.body.contains("gave up: corp not active"), "{}", page.body);
    let answer = console.act(&session, &format!("/admin/events/{failed_id}/replay"), &[("csrf", &csrf)]).await;
    assert_eq!(answer.location, Some(format!("/admin/events/{failed_id}?done=replayed")), "{}", answer.body);
    assert_ne!(db.texts(&format!("SELECT status AS t FROM events WHERE id = {failed_id}")), ["failed"]);
    assert_eq!(
        db.texts("SELECT actor || ' ' || action || ' ' || target AS t FROM audit_log WHERE action = 'event.replay'"),
        [format!("bootstrap event.replay {failed_id}")]
    );
    let (status, _) = app.send(Method::POST, "/api/v1/events/999999/replay", None).await;
    assert_eq!(status, 404);
    app.stop().await;
}

/// Every console page of an app with a corp, a ticket, tokens, events and a
/// webhook: none shows a secret the service holds.
#[tokio::test]
async fn no_console_page_shows_a_secret() {
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    app.install(&fake, "wwConsoleCorp", "Console Corp").await;
    let (status, _) = app.api(&format!("/api/v1/suites/{SUITE_ID}/corps/wwConsoleCorp/token")).await;
    assert_eq!(status, 200);
    let (status, created) =
        app.send(Method::POST, "/api/v1/webhooks", Some(&json!({"url": "http://127.0.0.1:9/hook"}))).await;
    assert_eq!(status, 201, "{created}");
    seed_events(&db);

    let console = Browserless::new(&app);
    let session = console.session().await;
    let mut paths: Vec<String> =
        ["/admin", "/admin/corps", "/admin/events", "/admin/webhooks", "/admin/ids", "/admin/audit"]
            .map(str::to_owned)
            .to_vec();
    paths.push(format!("/admin/corps/{SUITE_ID}/wwConsoleCorp"));
    let ids = db.texts("SELECT CAST(id AS TEXT) AS t FROM events");
    paths.extend(ids.iter().map(|id| format!("/admin/events/{id}")));
    let csrf = csrf_of(&console.get("/admin", Some(&session)).await.body);
    let refresh = format!("/admin/corps/{SUITE_ID}/wwConsoleCorp/refresh-token");
    let corp = console.act(&session, &refresh, &[("csrf", &csrf)]).await;
    assert_eq!(corp.status, 303, "token refreshed: {}", corp.body);

    let mut secrets = fake.issued_secrets();
    assert!(secrets.len() >= 4, "tickets, codes and tokens were issued: {secrets:?}");
    secrets.extend(
        [SUITE_SECRET, PROVIDER_SECRET, SUITE_AES_KEY, PROVIDER_TOKEN, PROVIDER_AES_KEY, ADMIN_TOKEN, MASTER_KEY]
            .map(str::to_owned),
    );
    secrets.push(created["secret"].as_str().expect("webhook secret").to_owned());
    secrets.push(session.clone());
    for path in &paths {
        let page = console.get(path, Some(&session)).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        for secret in &secrets {
            assert!(!page.body.contains(secret.as_str()), "{path} shows a secret");
        }
    }
    let overview = console.get("/admin", Some(&session)).await.body;
    assert!(overview.contains(SUITE_ID) && overview.contains("healthy"), "{overview}");
    app.stop().await;
    fake.stop().await;
}

// ---------------------------------------------------------------- the browser

/// chromedriver on a free port, ended when dropped.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver and Chromium, or `None` (a printed SKIPPED) where they are missing,
/// except under CI, where a missing browser fails the test.
fn start_chromedriver() -> Option<Chromedriver> {
    let found = Command::new("chromedriver").arg("--version").output().is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but chromedriver is missing: install chromium-driver"
        );
        println!("SKIPPED: no chromedriver");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let child = Command::new("chromedriver")
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".to_owned()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Chromedriver { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver listens");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(driver)
}

async fn browser(driver: &Chromedriver) -> Client {
    let mut options = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-gpu",
                 "--disable-dev-shm-usage", "--window-size=1280,1000", "--lang=en-US"],
        "prefs": {"intl.accept_languages": "en-US,en"},
    });
    for binary in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(binary).exists() {
            options["binary"] = json!(binary);
            break;
        }
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session")
}

/// Saves what the browser shows as `target/screenshots/<name>.png`.
async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
}

/// Waits for the element: after a form is submitted by the keyboard, the page with it
/// may still be loading.
async fn element(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
}

async fn text_of(client: &Client, css: &str) -> String {
    element(client, css).await.text().await.expect("text")
}

async fn click(client: &Client, css: &str) {
    element(client, css).await.click().await.expect("click");
}

async fn fill(client: &Client, css: &str, value: &str) {
    let field = element(client, css).await;
    field.clear().await.expect("clear");
    field.send_keys(value).await.expect("type");
}

/// Every visible form control has a label, and the page passes a keyboard walk:
/// each focusable element is reachable with Tab.
async fn assert_labelled(client: &Client, page: &str) {
    let unlabelled = client
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]),select,textarea')]\
             .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name || e.id);",
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(unlabelled, json!([]), "{page}: controls without a label");
    let unnamed = client
        .execute("return [...document.querySelectorAll('button')].filter(b => !b.textContent.trim() && !b.getAttribute('aria-label')).length;", vec![])
        .await
        .expect("script runs");
    assert_eq!(unnamed, json!(0), "{page}: buttons without a name");
}

/// Visits `path`, checks labels and saves a screenshot as `name`.
async fn visit(client: &Client, base: &str, path: &str, name: &str) {
    client.goto(&format!("{base}{path}")).await.unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_labelled(client, path).await;
    screenshot(client, name).await;
}

async fn wait_for_url(client: &Client, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = client.current_url().await.expect("url").to_string();
        if url.contains(wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "at {url}, wanted {wanted}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the browser is at exactly `path` (a prefix of other pages' paths).
async fn wait_for_path(client: &Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = client.current_url().await.expect("url");
        if url.path() == path {
            return;
        }
        assert!(Instant::now() < deadline, "at {url}, wanted {path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let Some(driver) = start_chromedriver() else {
        return;
    };
    let started = Instant::now();
    let db = TestDb::new();
    let fake = FakeWecom::start().await;
    let app = spawn_against(&db, &fake, |_| {}).await;
    app.push_ticket(&fake).await;
    let client = browser(&driver).await;
    let base = app.base.clone();
    let result = walk(&client, &app, &fake, &db, &base).await;
    client.close().await.expect("browser closes");
    app.stop().await;
    fake.stop().await;
    result.expect("the walk");
    println!("browser walk took {:.1} s", started.elapsed().as_secs_f64());
}

async fn walk(client: &Client, app: &TestApp, fake: &FakeWecom, db: &TestDb, base: &str) -> Result<(), String> {
    // The install flow: our page, WeCom's consent (the fake issues the auth code),
    // and back to the completion page, in the browser that holds the state cookie.
    visit(client, base, &format!("/install/{SUITE_ID}"), "install").await;
    let link = client
        .find(Locator::Id("install"))
        .await
        .map_err(|e| e.to_string())?
        .attr("href")
        .await
        .map_err(|e| e.to_string())?;
    let link = url::Url::parse(&link.ok_or("install link")?).map_err(|e| e.to_string())?;
    let state = link.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).ok_or("state")?;
    let code = fake.new_auth_code(SUITE_ID, "wwConsoleCorp", "Console Corp");
    client
        .goto(&format!("{base}/install/{SUITE_ID}/complete?auth_code={code}&state={state}"))
        .await
        .map_err(|e| e.to_string())?;
    let installed = text_of(client, "main").await;
    assert!(installed.contains("Console Corp"), "{installed}");
    screenshot(client, "installed").await;
    app.settled().await;
    let (failed_id, _) = seed_events(db);

    // Signing in: the key field has the focus, so the keyboard alone signs in.
    client.goto(&format!("{base}/admin")).await.map_err(|e| e.to_string())?;
    wait_for_url(client, "/admin/login").await;
    assert_labelled(client, "/admin/login").await;
    screenshot(client, "login").await;
    let focused = client.active_element().await.map_err(|e| e.to_string())?;
    assert_eq!(
        focused.attr("id").await.map_err(|e| e.to_string())?.as_deref(),
        Some("key"),
        "the key field has the focus"
    );
    focused.send_keys("wrong-key\u{E007}").await.map_err(|e| e.to_string())?;
    let problem = text_of(client, "#problem").await;
    assert_eq!(problem, "Cannot sign in with this key.");
    fill(client, "#key", ADMIN_TOKEN).await;
    click(client, "#sign-in").await;
    wait_for_path(client, "/admin").await;

    // Overview.
    let health = text_of(client, "#suites").await;
    assert!(health.contains(SUITE_ID) && health.contains("healthy"), "{health}");
    assert!(text_of(client, "#stat-failed-events").await.contains('1'), "the failed event counts");
    assert!(text_of(client, "#tokens").await.contains("corp"), "token state listed");
    assert!(text_of(client, "#actor").await.contains("bootstrap"));
    assert_labelled(client, "/admin").await;
    screenshot(client, "overview").await;

    // Corps: filter, then the corp, its token refreshed.
    visit(client, base, "/admin/corps", "corps").await;
    click(client, "#f-status option[value=active]").await;
    fill(client, "#f-q", "Console").await;
    click(client, "#filter").await;
    wait_for_url(client, "status=active").await;
    let corps = text_of(client, "#corps").await;
    assert!(corps.contains("Console Corp") && corps.contains("active"), "{corps}");
    click(client, "#corps a").await;
    wait_for_url(client, "/admin/corps/").await;
    assert_eq!(text_of(client, "#corpid").await, "wwConsoleCorp");
    click(client, "#refresh-token").await;
    wait_for_url(client, "done=token_refreshed").await;
    assert_eq!(text_of(client, "#done").await, "A new access token was fetched from WeCom.");
    assert_eq!(text_of(client, "#token-state").await.split(' ').next(), Some("valid"));
    assert_labelled(client, "corp").await;
    screenshot(client, "corp").await;

    // Events: filtered to the failed ones, one replayed.
    visit(client, base, "/admin/events", "events_all").await;
    click(client, "#f-status option[value=failed]").await;
    fill(client, "#f-kind", "change_contact").await;
    click(client, "#filter").await;
    wait_for_url(client, "status=failed").await;
    let rows = client.find_all(Locator::Css("#events tr.event")).await.map_err(|e| e.to_string())?;
    assert_eq!(rows.len(), 1, "only the failed event");
    assert_eq!(rows[0].attr("data-status").await.map_err(|e| e.to_string())?.as_deref(), Some("failed"));
    screenshot(client, "events").await;
    click(client, "#events tr.event a").await;
    wait_for_url(client, &format!("/admin/events/{failed_id}")).await;
    assert!(text_of(client, "#event-fields").await.contains("failing-user"));
    screenshot(client, "event").await;
    click(client, "#replay").await;
    wait_for_url(client, "done=replayed").await;
    assert_eq!(text_of(client, "#done").await, "The event is queued again and will be processed shortly.");
    assert_ne!(text_of(client, "#event-status").await, "failed");

    // Webhooks: one created, then deleted.
    visit(client, base, "/admin/webhooks", "webhooks_empty").await;
    fill(client, "#wh-url", "http://127.0.0.1:9/console-hook").await;
    fill(client, "#wh-kinds", "corp_authorized, change_contact").await;
    click(client, "#create-webhook").await;
    wait_for_url(client, "done=webhook_created").await;
    let listed = text_of(client, "#webhooks").await;
    assert!(listed.contains("http://127.0.0.1:9/console-hook") && listed.contains("change_contact"), "{listed}");
    let id = db.texts("SELECT id AS t FROM webhooks").remove(0);
    db.execute(&format!(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, status, attempts, last_status, last_error, next_attempt_at, first_attempt_at, updated_at) \
         VALUES ('{id}', {failed_id}, 'dead', 12, 500, 'server error', NULL, 1, 2)"
    ));
    client.refresh().await.map_err(|e| e.to_string())?;
    assert!(text_of(client, "#dead-letters").await.contains("server error"));
    assert_labelled(client, "/admin/webhooks").await;
    screenshot(client, "webhooks").await;
    click(client, "#dead-letters button").await;
    wait_for_url(client, "done=delivery_replayed").await;
    // Queued again: the deliverer may already have tried it (and failed: nothing listens).
    assert_eq!(db.count("SELECT COUNT(*) FROM webhook_deliveries WHERE status IN ('queued', 'failed')"), 1);
    click(client, "#webhooks button.danger").await;
    wait_for_url(client, "done=webhook_deleted").await;
    assert!(!text_of(client, "#webhooks").await.contains("console-hook"));
    assert_eq!(db.count("SELECT COUNT(*) FROM webhooks"), 0);

    // ID migrations and the audit log.
    visit(client, base, "/admin/ids", "ids").await;
    assert!(text_of(client, "#migrations").await.contains("No ID migration in progress."));
    visit(client, base, "/admin/audit", "audit").await;
    let audit = text_of(client, "#audit").await;
    assert!(audit.contains("event.replay") && audit.contains("bootstrap"), "{audit}");

    // The language switch, remembered across pages.
    assert_eq!(text_of(client, "#nav-overview").await, "Overview");
    click(client, "#lang-switch").await;
    wait_for_url(client, "lang=zh").await;
    assert_eq!(text_of(client, "#nav-overview").await, "概览");
    click(client, "#nav-events").await;
    wait_for_url(client, "/admin/events").await;
    assert_eq!(text_of(client, "h1").await, "事件");
    screenshot(client, "events_zh").await;
    click(client, "#lang-switch").await;
    wait_for_url(client, "lang=en").await;
    assert_eq!(text_of(client, "h1").await, "Events");

    // Signing out ends the session.
    click(client, "#sign-out").await;
    wait_for_url(client, "/admin/login").await;
    client.goto(&format!("{base}/admin/corps")).await.map_err(|e| e.to_string())?;
    wait_for_url(client, "/admin/login").await;
    assert_eq!(db.count("SELECT COUNT(*) FROM console_sessions"), 0);
    Ok(())
}
