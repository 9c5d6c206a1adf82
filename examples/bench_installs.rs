//! Install throughput against a slow WeCom: a fake on loopback answers every call
//! after `DELAY_MS` (default 200), and `COUNT` corps (default 1,000) install at once
//! through create_auth callbacks. Reports how long until every corp is active, for
//! the configured EFFECT_CONCURRENCY values (default "16 1": parallel, then serial
//! on a tenth of the corps).
//!
//! Usage: cargo run --release --example bench_installs [COUNT] [DELAY_MS] [CONCURRENCY…]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use wecom_provider::app::{self, StartOptions};
use wecom_provider::config::Config;
use wecom_provider::crypto::CallbackKeys;

const SUITE: &str = "wwbenchsuite";
const PROVIDER: &str = "wwbenchprovider";
const TOKEN: &str = "QDG6eK";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const ADMIN: &str = "bench-admin-token-0123456789-abcdef";

struct Fake {
    delay: Duration,
    calls: AtomicUsize,
}

/// Answers like WeCom, after the delay: any suite token, and for `code-N` the corp `wpBenchN`.
async fn fake(state: web::Data<Arc<Fake>>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    state.calls.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(state.delay).await;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = match request.path().trim_start_matches("/cgi-bin/") {
        "service/get_suite_token" => json!({"suite_access_token": "suite-token", "expires_in": 7200}),
        "service/get_permanent_code" => {
            let code = body["auth_code"].as_str().unwrap_or_default();
            let corpid = format!("wpBench{}", code.trim_start_matches("code-"));
            json!({
                "permanent_code": format!("permanent-{code}"),
                "access_token": format!("corp-token-{code}"),
                "expires_in": 7200,
                "auth_corp_info": {"corpid": corpid, "corp_name": "Bench Corp"},
                "auth_info": {"agent": [{"agentid": 1000001, "auth_mode": 0}]},
            })
        }
        "agent/get_admin_list" => json!({"errcode": 0, "admin": [{"userid": "admin", "auth_type": 1}]}),
        _ => json!({"errcode": 0}),
    };
    HttpResponse::Ok().json(answer)
}

fn sealed_path(keys: &CallbackKeys, plaintext: &str, nonce: usize) -> (String, String) {
    let timestamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs().to_string();
    let nonce = nonce.to_string();
    let (signature, encrypted) = keys.seal(&timestamp, &nonce, plaintext.as_bytes(), SUITE);
    (
        format!("/callback/{SUITE}/command?msg_signature={signature}&timestamp={timestamp}&nonce={nonce}"),
        format!("<xml><ToUserName><![CDATA[{SUITE}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"),
    )
}

async fn run(count: usize, delay: Duration, concurrency: usize) -> (Duration, usize) {
    let state = Arc::new(Fake { delay, calls: AtomicUsize::new(0) });
    let shared = web::Data::new(state.clone());
    let server = HttpServer::new(move || App::new().app_data(shared.clone()).default_service(web::to(fake)))
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("fake binds");
    let fake_base = format!("http://{}", server.addrs()[0]);
    let fake_server = server.run();
    let fake_handle = fake_server.handle();
    tokio::spawn(fake_server);

    let dir = tempfile::tempdir().expect("temp dir");
    let env: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", format!("sqlite://{}", dir.path().join("bench.db").display())),
        ("LISTEN_ADDR", "127.0.0.1:0".into()),
        ("WECOM_API_BASE", fake_base),
        ("ADMIN_TOKEN", ADMIN.into()),
        ("WECOM_PROVIDER_CORPID", PROVIDER.into()),
        ("WECOM_PROVIDER_SECRET", "provider-secret".into()),
        ("WECOM_SUITE_ID", SUITE.into()),
        ("WECOM_SUITE_SECRET", "suite-secret".into()),
        ("WECOM_SUITE_TOKEN", TOKEN.into()),
        ("WECOM_SUITE_ENCODING_AES_KEY", AES_KEY.into()),
        ("EFFECT_CONCURRENCY", concurrency.to_string()),
        ("RUST_LOG", "error".into()),
    ]);
    let config = Config::from_lookup(|name| env.get(name).cloned()).expect("bench configuration");
    let running = app::start(&config, StartOptions { handle_signals: false, ..StartOptions::default() })
        .await
        .expect("service starts");
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();
    let keys = CallbackKeys::new(TOKEN, AES_KEY).expect("keys");
    let post = |plaintext: String, nonce: usize| {
        let (path, body) = sealed_path(&keys, &plaintext, nonce);
        let request = client.post(format!("{base}{path}")).body(body);
        async move {
            let response = request.send().await.expect("callback answered");
            assert_eq!(response.status().as_u16(), 200, "callback acknowledged");
        }
    };
    let ticket = format!(
        "<xml><SuiteId>{SUITE}</SuiteId><InfoType>suite_ticket</InfoType><TimeStamp>1</TimeStamp><SuiteTicket>ticket</SuiteTicket></xml>"
    );
    post(ticket, 0).await;

    let started = Instant::now();
    let callbacks = (0..count).map(|index| {
        post(
            format!(
                "<xml><SuiteId>{SUITE}</SuiteId><AuthCode>code-{index}</AuthCode><InfoType>create_auth</InfoType><TimeStamp>{}</TimeStamp></xml>",
                1_700_000_000 + index
            ),
            index + 1,
        )
    });
    futures_util::future::join_all(callbacks).await;
    loop {
        let corps: Value = client
            .get(format!("{base}/api/v1/suites/{SUITE}/corps"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("corps answered")
            .json()
            .await
            .expect("json");
        let active = corps["corps"].as_array().map_or(0, |c| c.iter().filter(|c| c["status"] == "active").count());
        if active == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    running.stop().await;
    fake_handle.stop(false).await;
    (elapsed, state.calls.load(Ordering::Relaxed))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let delay = Duration::from_millis(args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200));
    let mut concurrencies: Vec<usize> = args.iter().skip(2).filter_map(|a| a.parse().ok()).collect();
    if concurrencies.is_empty() {
        concurrencies = vec![16, 1];
    }
    println!("installs against a WeCom answering every call after {delay:?}");
    for concurrency in concurrencies {
        // Serial runs take count × ~2 calls × delay: a tenth of the corps is enough.
        let corps = if concurrency == 1 { (count / 10).max(1) } else { count };
        let (elapsed, calls) = run(corps, delay, concurrency).await;
        println!(
            "EFFECT_CONCURRENCY={concurrency:>3}: {corps} corps active in {:.1} s ({:.1} installs/s, {calls} WeCom calls)",
            elapsed.as_secs_f64(),
            corps as f64 / elapsed.as_secs_f64()
        );
    }
}
