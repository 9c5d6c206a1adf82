//! Test harness: a fresh database per test (SQLite file, or a new PostgreSQL
//! database when TEST_DATABASE_URL names a server), the real app on a random
//! loopback port, and WeCom-shaped callbacks sealed with real keys.

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use serde_json::Value;
use wecom_provider::app::{self, Running, StartOptions};
use wecom_provider::config::{Config, DatabaseUrl};
use wecom_provider::crypto::CallbackKeys;

use crate::contract::assert_documented;
use crate::fake_wecom::FakeWecom;

/// The answer to a callback not stored within its deadline.
pub const STORE_TOO_SLOW: &str = "storage too slow, try again";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789-abcdef";
/// Vector set A of tests/data/wecom_vectors.json: its receiveid is our provider corpid,
/// so the official URL-verification vector verifies against the seeded suite.
pub const PROVIDER_CORPID: &str = "wx5823bf96d3bd56c7";
pub const SUITE_ID: &str = "wwsuite0001";
pub const SUITE_TOKEN: &str = "QDG6eK";
pub const SUITE_AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
pub const PROVIDER_TOKEN: &str = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo";
pub const PROVIDER_AES_KEY: &str = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt";
pub const SUITE_SECRET: &str = "suite-secret-never-shown";
pub const PROVIDER_SECRET: &str = "provider-secret-never-shown";

pub fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wecom_vectors.json"))
        .expect("tests/data/wecom_vectors.json is readable");
    serde_json::from_str(&text).expect("vectors.json is JSON")
}

/// A database of its own for one test; PostgreSQL ones are dropped afterwards.
pub struct TestDb {
    pub url: DatabaseUrl,
    _dir: Option<tempfile::TempDir>,
    pg_admin: Option<(String, String)>,
}

impl TestDb {
    pub fn new() -> Self {
        match std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            Some(admin_url) => {
                let name = format!("wecom_test_{:016x}", rand::random::<u64>());
                let mut admin = PgConnection::establish(&admin_url).expect("TEST_DATABASE_URL answers");
                admin
                    .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
                    .expect("create test database");
                let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                TestDb { url: DatabaseUrl::Postgres(url.to_string()), _dir: None, pg_admin: Some((admin_url, name)) }
            }
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("nested").join("wecom.db");
                TestDb { url: DatabaseUrl::Sqlite(path), _dir: Some(dir), pg_admin: None }
            }
        }
    }

    /// A SQLite database at `path` (whatever TEST_DATABASE_URL says): for tests of
    /// the file system under it.
    pub fn sqlite_at(path: std::path::PathBuf) -> Self {
        TestDb { url: DatabaseUrl::Sqlite(path), _dir: None, pg_admin: None }
    }

    /// The text column `t` of every row `sql` answers.
    pub fn texts(&self, sql: &str) -> Vec<String> {
        #[derive(diesel::QueryableByName)]
        struct Text {
            #[diesel(sql_type = diesel::sql_types::Text)]
            t: String,
        }
        use diesel::RunQueryDsl;
        let rows: Vec<Text> = match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(&path.display().to_string()).expect("sqlite opens");
                diesel::sql_query(sql).load(&mut conn).expect("query runs")
            }
            DatabaseUrl::Postgres(url) => {
                let mut conn = PgConnection::establish(url).expect("postgres answers");
                diesel::sql_query(sql).load(&mut conn).expect("query runs")
            }
        };
        rows.into_iter().map(|row| row.t).collect()
    }

    /// Runs SQL directly on the test database: how a test ages rows.
    pub fn execute(&self, sql: &str) {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(&path.display().to_string()).expect("sqlite opens");
                // The service may be writing: wait for its lock as the service's own connections do.
                conn.batch_execute("PRAGMA busy_timeout = 15000").expect("pragma runs");
                conn.batch_execute(sql).expect("sql runs");
            }
            DatabaseUrl::Postgres(url) => {
                let mut conn = PgConnection::establish(url).expect("postgres answers");
                conn.batch_execute(sql).expect("sql runs");
            }
        }
    }

    /// The first column of the first row of `sql`, a number.
    pub fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        use diesel::RunQueryDsl;
        let sql = format!("SELECT CAST(({sql}) AS BIGINT) AS n");
        let row: Count = match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(&path.display().to_string()).expect("sqlite opens");
                diesel::sql_query(sql).get_result(&mut conn).expect("query runs")
            }
            DatabaseUrl::Postgres(url) => {
                let mut conn = PgConnection::establish(url).expect("postgres answers");
                diesel::sql_query(sql).get_result(&mut conn).expect("query runs")
            }
        };
        row.n
    }

    /// Everything the database holds at rest: the SQLite file and its WAL byte for
    /// byte, or a `pg_dump` of the PostgreSQL database.
    pub fn raw_contents(&self) -> Vec<u8> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let mut bytes = std::fs::read(path).expect("database file readable");
                bytes.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
                bytes
            }
            DatabaseUrl::Postgres(url) => {
                let output = Command::new("pg_dump").arg(url).output().expect("pg_dump runs");
                assert!(output.status.success(), "pg_dump: {}", String::from_utf8_lossy(&output.stderr));
                output.stdout
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.url, DatabaseUrl::Postgres(_))
    }

    pub fn url_string(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => url.clone(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = &self.pg_admin
            && let Ok(mut admin) = PgConnection::establish(admin_url)
        {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// The master key of PostgreSQL tests (SQLite ones use the default key file beside the database).
pub const MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LW9mLTMyLWJ5dGVzLSEhISE=";

pub fn env_for(db: &TestDb) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("DATABASE_URL", db.url_string()),
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("WECOM_API_BASE", "http://127.0.0.1:9".to_owned()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("WECOM_PROVIDER_CORPID", PROVIDER_CORPID.to_owned()),
        ("WECOM_PROVIDER_SECRET", PROVIDER_SECRET.to_owned()),
        ("WECOM_PROVIDER_TOKEN", PROVIDER_TOKEN.to_owned()),
        ("WECOM_PROVIDER_ENCODING_AES_KEY", PROVIDER_AES_KEY.to_owned()),
        ("WECOM_SUITE_ID", SUITE_ID.to_owned()),
        ("WECOM_SUITE_SECRET", SUITE_SECRET.to_owned()),
        ("WECOM_SUITE_TOKEN", SUITE_TOKEN.to_owned()),
        ("WECOM_SUITE_ENCODING_AES_KEY", SUITE_AES_KEY.to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if db.is_postgres() {
        env.insert("MASTER_KEY".into(), MASTER_KEY.into());
    }
    env
}

pub fn config_from(env: &HashMap<String, String>) -> Config {
    Config::from_lookup(|name| env.get(name).cloned()).expect("test configuration is valid")
}

/// A client that never reuses a connection the service may be closing: pooled
/// connections are dropped after 2 s idle, before the service's 5 s keep-alive ends.
pub fn test_client() -> reqwest::Client {
    reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(2)).build().expect("HTTP client")
}

/// The `addr` field of a log line, as text (`addr=…`) or JSON (`"addr":"…"`) writes it.
pub fn logged_addr(line: &str) -> Option<String> {
    let text = line.split("addr=").nth(1).and_then(|rest| rest.split_whitespace().next());
    let json = line.split("\"addr\":\"").nth(1).and_then(|rest| rest.split('"').next());
    text.or(json).map(str::to_owned)
}

/// The service under test, on a random loopback port.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    process: Process,
    /// The suite seeded from WECOM_SUITE_ID.
    pub seeded_suite: String,
    /// The provider seeded from WECOM_PROVIDER_CORPID.
    pub seeded_provider: String,
}

/// In this test process, or the real binary as a child with its output captured.
enum Process {
    InProcess(Running),
    Child { child: KilledOnDrop, output: Arc<Mutex<String>> },
}

/// A child binary that a failing test's unwinding kills too, instead of leaving it
/// serving after the test run.
struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        // Already reaped when the test stopped it itself: then both are no-ops.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl TestApp {
    pub async fn spawn(db: &TestDb) -> Self {
        Self::spawn_with(db, StartOptions::default(), |_| {}).await
    }

    pub async fn spawn_with(
        db: &TestDb,
        mut options: StartOptions,
        adjust: impl FnOnce(&mut HashMap<String, String>),
    ) -> Self {
        let mut env = env_for(db);
        adjust(&mut env);
        options.http_workers = 1;
        options.handle_signals = false;
        let running = app::start(&config_from(&env), options).await.expect("app starts");
        TestApp {
            base: format!("http://{}", running.addr),
            client: test_client(),
            process: Process::InProcess(running),
            seeded_suite: env["WECOM_SUITE_ID"].clone(),
            seeded_provider: env["WECOM_PROVIDER_CORPID"].clone(),
        }
    }

    /// Runs the built binary (`serve`) with the test environment, capturing
    /// everything it writes to stdout and stderr.
    pub async fn spawn_binary(db: &TestDb, adjust: impl FnOnce(&mut HashMap<String, String>)) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wecom-provider"));
        command.arg("serve");
        Self::spawn_command(db, command, adjust).await
    }

    /// [`TestApp::spawn_binary`] with the soft open-file limit lowered to `limit`,
    /// as a shell's or systemd's default would leave it.
    pub async fn spawn_binary_with_file_limit(
        db: &TestDb,
        limit: u64,
        adjust: impl FnOnce(&mut HashMap<String, String>),
    ) -> Self {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", &format!("ulimit -Sn {limit} && exec \"$0\" serve"), env!("CARGO_BIN_EXE_wecom-provider")]);
        Self::spawn_command(db, command, adjust).await
    }

    async fn spawn_command(
        db: &TestDb,
        mut command: Command,
        adjust: impl FnOnce(&mut HashMap<String, String>),
    ) -> Self {
        let mut env = env_for(db);
        // The address is read from the info-level start-up line.
        env.insert("RUST_LOG".into(), "info".into());
        adjust(&mut env);
        let mut child = command
            .env_clear()
            .envs(&env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        for (stream, addr_tx) in [(Box::new(stdout) as Box<dyn Read + Send>, Some(addr_tx)), (Box::new(stderr), None)] {
            let output = output.clone();
            // Drained on threads so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(tx) = &addr_tx
                        && line.contains("wecom-provider listening")
                        && let Some(addr) = logged_addr(&line)
                    {
                        let _ = tx.send(addr);
                    }
                    let mut output = output.lock().expect("output lock");
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        let addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(Duration::from_secs(60)))
            .await
            .expect("join")
            .expect("the service logs its address");
        TestApp {
            base: format!("http://{addr}"),
            client: test_client(),
            process: Process::Child { child: KilledOnDrop(child), output },
            seeded_suite: env["WECOM_SUITE_ID"].clone(),
            seeded_provider: env["WECOM_PROVIDER_CORPID"].clone(),
        }
    }

    /// The process id of a binary started by [`TestApp::spawn_binary`].
    pub fn pid(&self) -> Option<u32> {
        match &self.process {
            Process::Child { child, .. } => Some(child.0.id()),
            Process::InProcess(_) => None,
        }
    }

    /// Everything a binary started by [`TestApp::spawn_binary`] has written so far.
    pub fn output(&self) -> String {
        match &self.process {
            Process::Child { output, .. } => output.lock().expect("output lock").clone(),
            Process::InProcess(_) => String::new(),
        }
    }

    /// Stops gracefully in process; a child binary gets SIGKILL, as a crash would.
    pub async fn stop(self) {
        match self.process {
            Process::InProcess(running) => running.stop().await,
            Process::Child { mut child, .. } => {
                child.0.kill().expect("SIGKILL");
                child.0.wait().expect("reaped");
            }
        }
    }

    /// Sends SIGTERM to a child binary and waits for it to exit; answers its exit
    /// status and how long it took.
    pub async fn terminate(self) -> (std::process::ExitStatus, Duration) {
        let Process::Child { mut child, .. } = self.process else {
            panic!("terminate is for a child binary");
        };
        let started = std::time::Instant::now();
        let sent = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
        let status = tokio::task::spawn_blocking(move || child.0.wait().expect("reaped")).await.expect("join");
        (status, started.elapsed())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with the admin bearer token; returns status and JSON body.
    pub async fn api(&self, path: &str) -> (u16, Value) {
        self.call_as(reqwest::Method::GET, ADMIN_TOKEN, path, None).await
    }

    /// A request with the admin bearer token and an optional JSON body.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.call_as(method, ADMIN_TOKEN, path, body).await
    }

    /// A request with `bearer` and an optional JSON body; an `/api/v1` answer the
    /// OpenAPI document does not describe fails the test (see `contract.rs`).
    pub async fn call_as(
        &self,
        method: reqwest::Method,
        bearer: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method.clone(), self.url(path)).bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let answer = response.json().await.unwrap_or(Value::Null);
        assert_documented(&method, path, status, &answer);
        (status, answer)
    }

    pub async fn post_raw(&self, path_and_query: &str, body: Vec<u8>) -> (u16, String) {
        let response = self.client.post(self.url(path_and_query)).body(body).send().await.expect("request");
        (response.status().as_u16(), response.text().await.unwrap_or_default())
    }

    pub async fn get_raw(&self, path_and_query: &str) -> (u16, String) {
        let response = self.client.get(self.url(path_and_query)).send().await.expect("request");
        (response.status().as_u16(), response.text().await.unwrap_or_default())
    }

    /// Seals `plaintext` as WeCom would (fresh random prefix) and posts it; like
    /// WeCom, retries (a few times) a callback answered 503 because it was not stored
    /// within 0.8 s, which a loaded test machine can cause.
    pub async fn post_callback(
        &self,
        path: &str,
        keys: &CallbackKeys,
        receive_id: &str,
        plaintext: &str,
    ) -> (u16, String) {
        let mut answer = self.post_callback_once(path, keys, receive_id, plaintext).await;
        for _ in 0..3 {
            if answer != (503, STORE_TOO_SLOW.to_owned()) {
                break;
            }
            answer = self.post_callback_once(path, keys, receive_id, plaintext).await;
        }
        answer
    }

    /// One delivery, its answer whatever it is.
    pub async fn post_callback_once(
        &self,
        path: &str,
        keys: &CallbackKeys,
        receive_id: &str,
        plaintext: &str,
    ) -> (u16, String) {
        let sealed = Sealed::new(keys, receive_id, plaintext);
        self.post_raw(&format!("{path}?{}", sealed.query()), sealed.body()).await
    }

    pub async fn events(&self) -> Vec<Value> {
        let (status, body) = self.api("/api/v1/events?limit=1000").await;
        assert_eq!(status, 200, "events feed answers: {body}");
        body["events"].as_array().cloned().unwrap_or_default()
    }

    pub async fn suite_view(&self, suite_id: &str) -> Value {
        let (status, body) = self.api(&format!("/api/v1/suites/{suite_id}")).await;
        assert_eq!(status, 200, "suite answers: {body}");
        body
    }
}

pub fn suite_keys() -> CallbackKeys {
    CallbackKeys::new(SUITE_TOKEN, SUITE_AES_KEY).expect("suite keys")
}

pub fn provider_keys() -> CallbackKeys {
    CallbackKeys::new(PROVIDER_TOKEN, PROVIDER_AES_KEY).expect("provider keys")
}

/// One signed, encrypted callback: query parameters and the XML envelope.
pub struct Sealed {
    pub msg_signature: String,
    pub timestamp: String,
    pub nonce: String,
    pub encrypt: String,
    pub to_user_name: String,
}

impl Sealed {
    pub fn new(keys: &CallbackKeys, receive_id: &str, plaintext: &str) -> Self {
        // Signed within the last day: older ones are past the retention window.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        Self::signed_at(keys, receive_id, plaintext, now - u64::from(rand::random::<u32>() % 86_400))
    }

    /// Sealed with the given signing time (Unix seconds).
    pub fn signed_at(keys: &CallbackKeys, receive_id: &str, plaintext: &str, unix_seconds: u64) -> Self {
        let timestamp = unix_seconds.to_string();
        let nonce = rand::random::<u32>().to_string();
        let (msg_signature, encrypt) = keys.seal(&timestamp, &nonce, plaintext.as_bytes(), receive_id);
        Sealed { msg_signature, timestamp, nonce, encrypt, to_user_name: receive_id.to_owned() }
    }

    pub fn query(&self) -> String {
        format!("msg_signature={}&timestamp={}&nonce={}", self.msg_signature, self.timestamp, self.nonce)
    }

    pub fn body(&self) -> Vec<u8> {
        envelope(&self.to_user_name, &self.encrypt).into_bytes()
    }
}

pub fn envelope(to_user_name: &str, encrypt: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{to_user_name}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>"
    )
}

pub fn suite_ticket_xml(suite_id: &str, ticket: &str) -> String {
    format!(
        "<xml><SuiteId><![CDATA[{suite_id}]]></SuiteId><InfoType><![CDATA[suite_ticket]]></InfoType><TimeStamp>1403610513</TimeStamp><SuiteTicket><![CDATA[{ticket}]]></SuiteTicket></xml>"
    )
}

pub fn command_path(suite_id: &str) -> String {
    format!("/callback/{suite_id}/command")
}

/// Polls `check` until it yields a value or the time is up (generous: it only
/// matters when something is broken, and a worker lease of a killed instance
/// takes 10 s to expire).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The service pointed at a fake WeCom that knows the seeded provider and suite.
pub async fn spawn_against(
    db: &TestDb,
    fake: &FakeWecom,
    adjust: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    let base = fake.base.clone();
    let app = TestApp::spawn_with(db, StartOptions::default(), |env| {
        env.insert("WECOM_API_BASE".into(), base);
        adjust(env);
    })
    .await;
    fake.add_provider(&app.seeded_provider, PROVIDER_SECRET);
    fake.add_suite(&app.seeded_provider, &app.seeded_suite, SUITE_SECRET);
    app
}

impl TestApp {
    /// Pushes a ticket the fake issued, as WeCom would, and waits until it is applied.
    pub async fn push_ticket(&self, fake: &FakeWecom) {
        let suite_id = self.seeded_suite.clone();
        let ticket = fake.new_ticket(&suite_id);
        let plaintext = suite_ticket_xml(&suite_id, &ticket);
        let (status, body) = self.post_callback(&command_path(&suite_id), &suite_keys(), &suite_id, &plaintext).await;
        assert_eq!((status, body.as_str()), (200, "success"));
        eventually("the ticket is applied", || async {
            let events = self.events().await;
            events.iter().filter(|e| e["kind"] == "suite_ticket").all(|e| e["status"] == "done").then_some(())
        })
        .await;
    }

    /// Delivers a command callback and asserts it was acknowledged.
    pub async fn command(&self, plaintext: &str) {
        let suite_id = self.seeded_suite.clone();
        let (status, body) = self.post_callback(&command_path(&suite_id), &suite_keys(), &suite_id, plaintext).await;
        assert_eq!((status, body.as_str()), (200, "success"), "callback acknowledged");
    }

    /// Waits until every event in the feed has been processed (done or failed).
    pub async fn settled(&self) -> Vec<Value> {
        eventually("every event is processed", || async {
            let events = self.events().await;
            events.iter().all(|e| e["status"] != "pending").then_some(events)
        })
        .await
    }

    /// The corp as the API shows it, once it exists.
    pub async fn corp(&self, corpid: &str) -> Value {
        let path = format!("/api/v1/suites/{}/corps/{corpid}", self.seeded_suite);
        eventually("the corp is stored", || async {
            let (status, body) = self.api(&path).await;
            (status == 200).then_some(body)
        })
        .await
    }

    /// A corp installed through a create_auth callback (a ticket pushed first), once
    /// every pending effect has run.
    pub async fn install(&self, fake: &FakeWecom, corpid: &str, corp_name: &str) -> Value {
        let suite_id = self.seeded_suite.clone();
        let code = fake.new_auth_code(&suite_id, corpid, corp_name);
        self.command(&create_auth_xml(&suite_id, &code, 1_700_000_100)).await;
        // The install is complete once its effect is (admins and first token included).
        self.settled().await;
        self.corp(corpid).await
    }
}

/// A contact change for member `user{n}`: distinct for each `n`, and not secret, so
/// a test can find it in the stored fields.
pub fn change_contact_xml(n: i64) -> String {
    format!(
        "<xml><SuiteId><![CDATA[{SUITE_ID}]]></SuiteId><AuthCorpId><![CDATA[wwCorpA]]></AuthCorpId><InfoType><![CDATA[change_contact]]></InfoType><TimeStamp>1403610513</TimeStamp><ChangeType><![CDATA[create_user]]></ChangeType><UserID><![CDATA[user{n}]]></UserID></xml>"
    )
}

pub fn create_auth_xml(suite_id: &str, auth_code: &str, timestamp: i64) -> String {
    format!(
        "<xml><SuiteId><![CDATA[{suite_id}]]></SuiteId><AuthCode><![CDATA[{auth_code}]]></AuthCode><InfoType><![CDATA[create_auth]]></InfoType><TimeStamp>{timestamp}</TimeStamp><State><![CDATA[]]></State></xml>"
    )
}

pub fn reset_permanent_code_xml(suite_id: &str, auth_code: &str) -> String {
    format!(
        "<xml><SuiteId><![CDATA[{suite_id}]]></SuiteId><AuthCode><![CDATA[{auth_code}]]></AuthCode><InfoType><![CDATA[reset_permanent_code]]></InfoType><TimeStamp>1700000300</TimeStamp></xml>"
    )
}

pub fn auth_event_xml(suite_id: &str, info_type: &str, corpid: &str, timestamp: i64) -> String {
    format!(
        "<xml><SuiteId><![CDATA[{suite_id}]]></SuiteId><InfoType><![CDATA[{info_type}]]></InfoType><TimeStamp>{timestamp}</TimeStamp><AuthCorpId><![CDATA[{corpid}]]></AuthCorpId></xml>"
    )
}
