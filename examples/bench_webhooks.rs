//! Webhook delivery rate. Starts the service on SQLite in a temporary folder with one
//! subscription to a local receiver that answers 200 at once, appends EVENTS events
//! (default 50,000) in batches of 500 as the intake would, and measures how fast they
//! arrive. A second run adds a subscription whose endpoint never answers: the healthy
//! subscription's rate must not drop. Only loopback addresses are used.
//!
//! Usage: cargo run --release --example bench_webhooks [EVENTS]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use wecom_provider::app::{self, StartOptions};
use wecom_provider::config::Config;
use wecom_provider::model::{CorpId, ProviderCorpId, SuiteId};
use wecom_provider::store::events::{self, NewEvent};

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789-abcdef";
const APPEND_BATCH: usize = 500;
/// Longest a run may take before it is reported as not finished.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// A local endpoint counting requests; `hang` ones never answer.
async fn receiver(hang: bool) -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let server = HttpServer::new(move || {
        let counted = counted.clone();
        App::new().default_service(web::to(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::Relaxed);
                if hang {
                    std::future::pending::<()>().await;
                }
                HttpResponse::Ok().body("ok")
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("a loopback port");
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}/hook"), count)
}

struct RunResult {
    append_seconds: f64,
    deliver_seconds: f64,
    delivered: u64,
    hanging_requests: Option<u64>,
}

async fn run(events_total: usize, with_hanging: bool) -> RunResult {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let env: HashMap<&str, String> = [
        ("DATABASE_URL", format!("sqlite://{}", dir.path().join("bench.db").display())),
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("RUST_LOG", "error".to_owned()),
    ]
    .into_iter()
    .collect();
    let config = Config::from_lookup(|name| env.get(name).cloned()).expect("a valid configuration");
    let options = StartOptions { run_worker: false, handle_signals: false, ..StartOptions::default() };
    let running = app::start(&config, options).await.expect("the service starts");
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();
    let subscribe = |url: String| {
        let request =
            client.post(format!("{base}/api/v1/webhooks")).bearer_auth(ADMIN_TOKEN).json(&json!({"url": url}));
        async move {
            let answer: Value = request.send().await.expect("the API answers").json().await.expect("JSON");
            assert!(answer["id"].is_string(), "subscribed: {answer}");
        }
    };
    let (healthy_url, healthy) = receiver(false).await;
    subscribe(healthy_url).await;
    let hanging = if with_hanging {
        let (url, count) = receiver(true).await;
        subscribe(url).await;
        Some(count)
    } else {
        None
    };
    // The deliverer picks new subscriptions up within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let started = Instant::now();
    let (provider, suite, corp) =
        (ProviderCorpId::from("wwbenchprovider"), SuiteId::from("wwbenchsuite"), CorpId::from("wwbenchcorp"));
    for start in (0..events_total).step_by(APPEND_BATCH) {
        let batch: Vec<NewEvent> = (start..(start + APPEND_BATCH).min(events_total))
            .map(|i| {
                let n = i.to_string();
                NewEvent::derived(
                    &provider,
                    &suite,
                    Some(&corp),
                    "change_contact",
                    &[&n],
                    json!({"ChangeType": "update_user", "UserID": format!("user-{i}"), "Department": [1, 2, 3]}),
                )
            })
            .collect();
        running.db.run(move |conn| events::append(conn, &batch)).await.expect("events appended");
        running.db.notify_appended();
    }
    let append_seconds = started.elapsed().as_secs_f64();
    let target = u64::try_from(events_total).unwrap_or(u64::MAX);
    while healthy.load(Ordering::Relaxed) < target && started.elapsed() < RUN_LIMIT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deliver_seconds = started.elapsed().as_secs_f64();
    let result = RunResult {
        append_seconds,
        deliver_seconds,
        delivered: healthy.load(Ordering::Relaxed),
        hanging_requests: hanging.map(|count| count.load(Ordering::Relaxed)),
    };
    running.stop().await;
    result
}

#[tokio::main]
async fn main() {
    let events_total: usize = std::env::args().nth(1).map_or(50_000, |n| n.parse().expect("EVENTS is a number"));
    println!("bench_webhooks: {events_total} events, SQLite in a temporary folder, receivers on 127.0.0.1");
    let mut rates = Vec::new();
    for (label, with_hanging) in [("one healthy subscription", false), ("plus one hanging subscription", true)] {
        let result = run(events_total, with_hanging).await;
        let rate = result.delivered as f64 / result.deliver_seconds;
        rates.push(rate);
        println!("== {label}");
        println!(
            "   appended {events_total} events in {:.2} s ({:.0} events/s)",
            result.append_seconds,
            events_total as f64 / result.append_seconds
        );
        println!(
            "   delivered {} of {events_total} to the healthy endpoint in {:.2} s: {rate:.0} events/s",
            result.delivered, result.deliver_seconds
        );
        if let Some(requests) = result.hanging_requests {
            println!("   the hanging endpoint was sent {requests} requests (never answered)");
        }
    }
    println!(
        "== summary: {:.0} events/s alone, {:.0} events/s beside a hanging endpoint ({:+.0}%); target >= 3000 events/s",
        rates[0],
        rates[1],
        (rates[1] / rates[0] - 1.0) * 100.0
    );
}
