//! The public edge against hostile clients: held and slow bodies, idle
//! connections past the open-file limit, and per-address rate limits.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::*;

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS value");
    kib * 1024
}

/// This test process opens more connections than a default soft limit allows.
fn raise_own_file_limit() {
    rlimit::increase_nofile_limit(u64::MAX).expect("open-file limit raised");
}

fn address_of(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Posts one fresh valid callback and answers its status and how long it took.
async fn timed_callback(app: &TestApp, n: usize) -> (u16, Duration) {
    let (status, took, _) = timed_callback_answer(app, n).await;
    (status, took)
}

async fn timed_callback_answer(app: &TestApp, n: usize) -> (u16, Duration, String) {
    let plaintext = suite_ticket_xml(SUITE_ID, &format!("edge-{n}"));
    let sealed = Sealed::new(&suite_keys(), SUITE_ID, &plaintext);
    let started = Instant::now();
    let (status, answer) = app.post_raw(&format!("{}?{}", command_path(SUITE_ID), sealed.query()), sealed.body()).await;
    (status, started.elapsed(), answer)
}

/// 500 connections holding unfinished 1 MiB bodies and 200 trickling bodies cost
/// bounded memory, and real callbacks are answered within WeCom's 1 s throughout (at least
/// nine in ten as the test sees them, none after 3 s).
#[tokio::test]
async fn held_and_slow_bodies_keep_memory_bounded_and_callbacks_answered() {
    // Peak seen: 136 MiB with glibc's malloc, 142–146 MiB with jemalloc (its size
    // classes hold more for the same live buffers); 700 MiB of bodies are declared.
    const MAX_RSS: u64 = 160 << 20;
    raise_own_file_limit();
    let db = TestDb::new();
    let app = TestApp::spawn_binary(&db, |_| {}).await;
    let pid = app.pid().expect("child pid");
    let address = address_of(&app);
    let sealed = Sealed::new(&suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "attacker"));
    let head = format!(
        "POST {}?{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1048576\r\n\r\n",
        command_path(SUITE_ID),
        sealed.query()
    );
    let chunk = vec![b'A'; 256 << 10];
    let mut attackers = Vec::new();
    for _ in 0..500 {
        let (address, head, chunk) = (address.clone(), head.clone(), chunk.clone());
        attackers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&address).await.expect("connect");
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&chunk).await;
            // Held open, never finished.
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        }));
    }
    for _ in 0..200 {
        let (address, head) = (address.clone(), head.clone());
        attackers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&address).await.expect("connect");
            let _ = stream.write_all(head.as_bytes()).await;
            while stream.write_all(b"B").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }

    let mut peak_rss = 0;
    let (mut sent, mut answered, mut too_slow, mut past_deadline) = (0, 0, 0, 0);
    let started = Instant::now();
    // Within the read timeout (10 s), while every attacker still holds on. An answer
    // past WeCom's 1 s deadline is counted, not fatal: this test's own runtime drives
    // the 700 attackers beside the timed client, so on a loaded test machine a few
    // answers are read late here; a starved server would answer most of them late or
    // only at the read timeout.
    while started.elapsed() < Duration::from_secs(8) {
        let (status, took, answer) = timed_callback_answer(&app, sent).await;
        assert!(took < Duration::from_secs(3), "callback {sent} took {took:?}");
        if took >= Duration::from_secs(1) {
            past_deadline += 1;
        }
        // A loaded test machine can miss the 0.8 s store deadline: that answer is an
        // honest 503 WeCom retries; anything else is the attack getting through.
        match (status, answer.as_str()) {
            (200, _) => answered += 1,
            (503, STORE_TOO_SLOW) => too_slow += 1,
            _ => panic!("callback {sent} during the attack, after {took:?}: {status} {answer}"),
        }
        sent += 1;
        peak_rss = peak_rss.max(rss_bytes(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(peak_rss < MAX_RSS, "peak RSS {} MiB", peak_rss >> 20);
    assert!(answered >= 20 && too_slow * 10 <= sent, "{answered} of {sent} stored at once in 8 s, {too_slow} too slow");
    assert!(past_deadline * 10 <= sent, "{past_deadline} of {sent} callbacks answered after 1 s");
    eprintln!("peak RSS under attack: {} MiB; {answered} of {sent} callbacks stored at once", peak_rss >> 20);
    let stored = db.count("SELECT COUNT(*) FROM events WHERE kind = 'suite_ticket'");
    // A 503'd callback may commit after its answer (WeCom's retry is then deduped).
    let stored = usize::try_from(stored).expect("count");
    assert!((answered..=sent).contains(&stored), "{stored} stored, {answered} acknowledged, no attacker's");
    attackers.iter().for_each(tokio::task::JoinHandle::abort);
    app.stop().await;
}

/// With the soft open-file limit at 1,024 (a shell's default), 1,200 idle
/// connections leave real callbacks answered within 1 s: the service raises its
/// limit at start and caps connections below it.
#[tokio::test]
async fn idle_connections_past_the_soft_file_limit_leave_callbacks_answered() {
    raise_own_file_limit();
    let db = TestDb::new();
    let app = TestApp::spawn_binary_with_file_limit(&db, 1024, |_| {}).await;
    let address = address_of(&app);
    let mut idle = Vec::new();
    for n in 0..1200 {
        idle.push(TcpStream::connect(&address).await.unwrap_or_else(|error| panic!("idle connection {n}: {error}")));
    }
    for n in 0..20 {
        let (status, took) = timed_callback(&app, n).await;
        assert_eq!(status, 200, "callback {n}");
        assert!(took < Duration::from_secs(1), "callback {n} took {took:?}");
    }
    assert_eq!(db.count("SELECT COUNT(*) FROM events WHERE kind = 'suite_ticket'"), 20);
    drop(idle);
    app.stop().await;
}

#[tokio::test]
async fn api_requests_past_a_clients_rate_are_refused_before_authentication() {
    let db = TestDb::new();
    let app = TestApp::spawn_with(&db, Default::default(), |env| {
        env.insert("API_RATE_LIMIT_PER_MINUTE".into(), "3".into());
    })
    .await;
    for n in 0..3 {
        let (status, _) = app.api("/api/v1/admin/suites").await;
        assert_ne!(status, 429, "request {n}");
    }
    let response = app.client.get(app.url("/api/v1/admin/suites")).bearer_auth("wrong").send().await.expect("answer");
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    // Without TRUSTED_PROXIES a forwarded address is the client's own claim: ignored.
    let forged = app
        .client
        .get(app.url("/api/v1/admin/suites"))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .expect("answer");
    assert_eq!(forged.status().as_u16(), 429);
    app.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_rate() {
    let db = TestDb::new();
    let app = TestApp::spawn_with(&db, Default::default(), |env| {
        env.insert("API_RATE_LIMIT_PER_MINUTE".into(), "2".into());
        env.insert("TRUSTED_PROXIES".into(), "127.0.0.1".into());
    })
    .await;
    let from = |client: &'static str| {
        app.client
            .get(app.url("/api/v1/admin/suites"))
            .bearer_auth(ADMIN_TOKEN)
            .header("x-forwarded-for", client)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(from("198.51.100.7").await.expect("answer").status().as_u16(), 200);
    }
    assert_eq!(from("198.51.100.7").await.expect("answer").status().as_u16(), 429);
    // The proxy appends the peer it saw; what the client put before it is not believed.
    assert_eq!(from("198.51.100.8, 198.51.100.7").await.expect("answer").status().as_u16(), 429);
    assert_eq!(from("198.51.100.8").await.expect("answer").status().as_u16(), 200, "another client");
    app.stop().await;
}

#[tokio::test]
async fn install_page_views_past_a_clients_rate_are_refused() {
    let db = TestDb::new();
    let app = TestApp::spawn_with(&db, Default::default(), |env| {
        env.insert("INSTALL_RATE_LIMIT_PER_MINUTE".into(), "2".into());
    })
    .await;
    for _ in 0..2 {
        let (status, _) = app.get_raw("/install/wwunknownsuite").await;
        assert_eq!(status, 404);
    }
    let (status, body) = app.get_raw("/install/wwunknownsuite").await;
    assert_eq!((status, body.as_str()), (429, "too many requests from this address; try again shortly"));
    // The callback URLs are WeCom's and never rate limited by address.
    let (status, _) = timed_callback(&app, 0).await;
    assert_eq!(status, 200);
    app.stop().await;
}
