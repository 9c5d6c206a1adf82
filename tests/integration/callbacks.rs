use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn the_official_url_verification_vector_answers_the_exact_plaintext() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let vectors = vectors();
    let a1 = &vectors["cases"][0];
    assert_eq!(a1["name"], "A1_url_verification");
    let query = format!(
        "msg_signature={}&timestamp={}&nonce={}&echostr={}",
        a1["msg_signature"].as_str().unwrap(),
        a1["timestamp"].as_str().unwrap(),
        a1["nonce"].as_str().unwrap(),
        a1["echostr_url_encoded"].as_str().unwrap()
    );
    for route in ["command", "data"] {
        let response = app.client.get(app.url(&format!("/callback/{SUITE_ID}/{route}?{query}"))).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{route}");
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert_eq!(response.bytes().await.unwrap().as_ref(), b"1616140317555161061");
    }
    // A literal '+' in the query (not percent-encoded) is base64, not a space.
    let raw_echostr = a1["echostr"].as_str().unwrap().replace('/', "%2F").replace('=', "%3D");
    let literal_plus = query.replace(a1["echostr_url_encoded"].as_str().unwrap(), &raw_echostr);
    assert!(literal_plus.contains('+'));
    let (status, body) = app.get_raw(&format!("/callback/{SUITE_ID}/command?{literal_plus}")).await;
    assert_eq!((status, body.as_str()), (200, "1616140317555161061"));
    assert!(app.events().await.is_empty(), "URL verification stores nothing");
    app.stop().await;
}

#[tokio::test]
async fn url_verification_checks_signature_and_receiveid() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let keys = suite_keys();
    let sealed = |receive_id: &str| {
        let (signature, echostr) = keys.seal("1409659589", "263014780", b"echo-1234", receive_id);
        format!(
            "msg_signature={signature}&timestamp=1409659589&nonce=263014780&echostr={}",
            echostr.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
        )
    };
    let path = command_path(SUITE_ID);
    assert_eq!(app.get_raw(&format!("{path}?{}", sealed(SUITE_ID))).await, (200, "echo-1234".to_owned()));
    assert_eq!(app.get_raw(&format!("{path}?{}", sealed("wwsomeoneelse"))).await.0, 403);
    let tampered = sealed(SUITE_ID).replace("nonce=263014780", "nonce=263014781");
    assert_eq!(app.get_raw(&format!("{path}?{tampered}")).await.0, 401);
    let without_echostr = sealed(SUITE_ID).split("&echostr").next().unwrap().to_owned();
    let (status, reason) = app.get_raw(&format!("{path}?{without_echostr}")).await;
    assert_eq!(status, 400);
    assert!(reason.contains("echostr"), "{reason}");
    assert_eq!(app.get_raw(&format!("/callback/wwnosuchsuite/command?{}", sealed(SUITE_ID))).await.0, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_suite_ticket_is_stored_and_visible_without_its_value() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let before = app.suite_view(SUITE_ID).await;
    assert_eq!(before["has_ticket"], false);
    assert_eq!(before["ticket_updated_at"], Value::Null);

    let ticket = "ticket-value-AbC123-secret";
    let (status, body) =
        app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, ticket)).await;
    assert_eq!((status, body.as_str()), (200, "success"));

    let view = eventually("ticket applied", || async {
        let view = app.suite_view(SUITE_ID).await;
        (view["has_ticket"] == true).then_some(view)
    })
    .await;
    assert_eq!(view["suite_id"], SUITE_ID);
    assert_eq!(view["provider_corpid"], PROVIDER_CORPID);
    assert!(view["ticket_updated_at"].as_str().unwrap().ends_with('Z'));
    assert!(!view.to_string().contains(ticket));

    let events = app.events().await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["kind"], "suite_ticket");
    assert_eq!(event["suite_id"], SUITE_ID);
    assert_eq!(event["fields"]["InfoType"], "suite_ticket");
    assert_eq!(event["fields"]["SuiteTicket"], "[redacted]");
    assert!(!Value::Array(events.clone()).to_string().contains(ticket), "the feed shows the ticket");
    app.stop().await;
}

#[tokio::test]
async fn the_same_callback_re_encrypted_is_acknowledged_and_stored_once() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let plaintext = suite_ticket_xml(SUITE_ID, "t-1");
    let first = Sealed::new(&suite_keys(), SUITE_ID, &plaintext);
    let second = Sealed::new(&suite_keys(), SUITE_ID, &plaintext);
    assert_ne!(first.encrypt, second.encrypt, "fresh random prefix, fresh ciphertext");
    assert_ne!(first.nonce, second.nonce);
    for sealed in [&first, &second, &first] {
        let (status, body) =
            app.post_raw(&format!("{}?{}", command_path(SUITE_ID), sealed.query()), sealed.body()).await;
        assert_eq!((status, body.as_str()), (200, "success"));
    }
    assert_eq!(app.events().await.len(), 1);

    // A different message (another ticket) is a different event.
    let (status, _) =
        app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "t-2")).await;
    assert_eq!(status, 200);
    assert_eq!(app.events().await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_distinct_callbacks_are_each_stored_exactly_once() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let keys = suite_keys();
    let posts = (0..120).map(|i| {
        let plaintext = if i % 3 == 0 {
            // every third message is a retry of the one before it
            change_contact_xml(i - i % 3 + 1)
        } else {
            change_contact_xml(i)
        };
        let sealed = Sealed::new(&keys, SUITE_ID, &plaintext);
        let app = &app;
        async move { app.post_raw(&format!("{}?{}", command_path(SUITE_ID), sealed.query()), sealed.body()).await }
    });
    let results = futures_util::future::join_all(posts).await;
    assert!(results.iter().all(|(status, body)| *status == 200 && body == "success"));
    let events = app.events().await;
    assert_eq!(events.len(), 80, "120 posts of 80 distinct messages");
    assert!(
        events.iter().all(|e| e["status"] == "done" && e["attempts"] == 0),
        "change_contact has no effect: stored as done, the worker never touches it"
    );
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "feed is in id order");
    app.stop().await;
}

#[tokio::test]
async fn every_rejection_answers_its_status_and_changes_nothing() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let keys = suite_keys();
    let path = command_path(SUITE_ID);
    let plaintext = suite_ticket_xml(SUITE_ID, "never-stored");
    let good = Sealed::new(&keys, SUITE_ID, &plaintext);

    let mut cases: Vec<(&str, String, Vec<u8>, u16)> = Vec::new();
    // Flip one base64 character of the ciphertext, keep the signature.
    let mut flipped = good.encrypt.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    cases.push((
        "tampered ciphertext",
        format!("{path}?{}", good.query()),
        envelope(SUITE_ID, &flipped).into_bytes(),
        401,
    ));
    // Re-signed, but not base64.
    let not_base64 = "!!!not-base64!!!";
    let signature = keys.signature(&good.timestamp, &good.nonce, not_base64);
    cases.push((
        "bad base64",
        format!("{path}?msg_signature={signature}&timestamp={}&nonce={}", good.timestamp, good.nonce),
        envelope(SUITE_ID, not_base64).into_bytes(),
        400,
    ));
    // Re-signed ciphertext whose PKCS#7 padding is invalid (pad byte 0).
    let bad_pad = encrypt_unpadded(&[0u8; 64]);
    let signature = keys.signature(&good.timestamp, &good.nonce, &bad_pad);
    cases.push((
        "bad padding",
        format!("{path}?msg_signature={signature}&timestamp={}&nonce={}", good.timestamp, good.nonce),
        envelope(SUITE_ID, &bad_pad).into_bytes(),
        400,
    ));
    cases.push(("malformed envelope", format!("{path}?{}", good.query()), b"<xml><Encrypt>".to_vec(), 400));
    let broken = Sealed::new(&keys, SUITE_ID, "<xml><InfoType>suite_ticket</Info></xml>");
    cases.push(("malformed plaintext XML", format!("{path}?{}", broken.query()), broken.body(), 400));
    for missing in ["msg_signature", "timestamp", "nonce"] {
        let query: Vec<String> =
            good.query().split('&').filter(|pair| !pair.starts_with(missing)).map(str::to_owned).collect();
        cases.push(("missing parameter", format!("{path}?{}", query.join("&")), good.body(), 400));
    }
    let other = Sealed::new(&keys, "wwanothersuite", &plaintext);
    cases.push(("wrong receiveid", format!("{path}?{}", other.query()), other.body(), 403));
    let provider_id = Sealed::new(&keys, PROVIDER_CORPID, &plaintext);
    cases.push(("provider corpid on a POST", format!("{path}?{}", provider_id.query()), provider_id.body(), 403));
    cases.push(("unknown suite", format!("/callback/wwnosuch/command?{}", good.query()), good.body(), 404));
    let data_from_stranger = Sealed::new(&keys, "wwNotAuthorizedCorp", &plaintext);
    cases.push((
        "data callback from a corp that did not authorize",
        format!("/callback/{SUITE_ID}/data?{}", data_from_stranger.query()),
        data_from_stranger.body(),
        403,
    ));
    let mut oversized = good.body();
    oversized.extend(std::iter::repeat_n(b' ', 1 << 20));
    cases.push(("body over 1 MiB", format!("{path}?{}", good.query()), oversized, 413));

    for (what, url, body, expected) in cases {
        let (status, reason) = app.post_raw(&url, body).await;
        assert_eq!(status, expected, "{what}: {reason}");
        assert!(!reason.is_empty() && reason.len() < 200 && reason != "success", "{what}: reason {reason:?}");
    }
    assert!(app.events().await.is_empty(), "no rejected callback was stored");
    assert_eq!(app.suite_view(SUITE_ID).await["has_ticket"], false);
    app.stop().await;
}

/// AES-256-CBC of `data` (a multiple of 16 bytes) under the suite key with no padding
/// added, base64: lets a test build ciphertext whose padding is wrong.
fn encrypt_unpadded(data: &[u8]) -> String {
    use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
    use base64::Engine;
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let key = lenient.decode(format!("{SUITE_AES_KEY}=")).expect("suite key");
    let cipher = cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, &key[..16]).expect("32-byte key");
    let mut buffer = data.to_vec();
    let encrypted = cipher.encrypt_padded_mut::<NoPadding>(&mut buffer, data.len()).expect("whole blocks");
    base64::engine::general_purpose::STANDARD.encode(encrypted)
}

#[tokio::test]
async fn an_unknown_kind_is_stored_and_shown_in_the_feed() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let xml = format!(
        "<xml><SuiteId><![CDATA[{SUITE_ID}]]></SuiteId><InfoType><![CDATA[some_future_thing]]></InfoType><TimeStamp>1700000000</TimeStamp><AuthCorpId><![CDATA[wwMixedCase]]></AuthCorpId><Detail><Item>a</Item><Item>b</Item></Detail></xml>"
    );
    let (status, _) = app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &xml).await;
    assert_eq!(status, 200);
    let event = eventually("event processed", || async {
        let events = app.events().await;
        events.into_iter().find(|e| e["status"] == "done")
    })
    .await;
    assert_eq!(event["kind"], "some_future_thing");
    assert_eq!(event["corpid"], "wwMixedCase");
    assert_eq!(event["fields"]["Detail"]["Item"], serde_json::json!(["a", "b"]));
    app.stop().await;
}

#[tokio::test]
async fn the_provider_system_event_url_verifies_and_stores_with_secrets_redacted() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let keys = provider_keys();
    let path = format!("/callback/provider/{PROVIDER_CORPID}");

    let (signature, echostr) = keys.seal("1", "2", b"provider-echo", PROVIDER_CORPID);
    let echostr = echostr.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    let (status, body) =
        app.get_raw(&format!("{path}?msg_signature={signature}&timestamp=1&nonce=2&echostr={echostr}")).await;
    assert_eq!((status, body.as_str()), (200, "provider-echo"));

    let xml = format!(
        "<xml><ServiceCorpId><![CDATA[{PROVIDER_CORPID}]]></ServiceCorpId><InfoType><![CDATA[register_corp]]></InfoType><TimeStamp>1502682179</TimeStamp><RegisterCode><![CDATA[pIKi3wRPNWCGF-pyP-YU5KWjDDD]]></RegisterCode><AuthCorpId><![CDATA[wwNewCorp]]></AuthCorpId><ContactSync><AccessToken><![CDATA[contact-sync-token-secret]]></AccessToken><ExpiresIn><![CDATA[1800]]></ExpiresIn></ContactSync><AuthUserInfo><UserId><![CDATA[zhangshan]]></UserId></AuthUserInfo><State><![CDATA[state1]]></State></xml>"
    );
    let (status, _) = app.post_callback(&path, &keys, PROVIDER_CORPID, &xml).await;
    assert_eq!(status, 200);
    // Signed with the suite's keys instead of the provider's: rejected.
    let (status, _) = app.post_callback(&path, &suite_keys(), PROVIDER_CORPID, &xml).await;
    assert_eq!(status, 401);
    let (status, _) = app.post_callback("/callback/provider/wwunknownprovider", &keys, PROVIDER_CORPID, &xml).await;
    assert_eq!(status, 404);

    // The registration's effect appends corp_registered (see front_door).
    let events = app.settled().await;
    assert_eq!(events.len(), 2, "{events:?}");
    let event = events.iter().find(|e| e["kind"] == "register_corp").expect("the callback is stored");
    assert!(events.iter().any(|e| e["kind"] == "corp_registered"));
    assert_eq!(event["provider_corpid"], PROVIDER_CORPID);
    assert_eq!(event["suite_id"], Value::Null);
    assert_eq!(event["corpid"], "wwNewCorp");
    assert_eq!(event["fields"]["ContactSync"]["AccessToken"], "[redacted]");
    assert_eq!(event["fields"]["ContactSync"]["ExpiresIn"], "1800");
    assert!(!event.to_string().contains("contact-sync-token-secret"));
    app.stop().await;
}

#[tokio::test]
async fn a_rejection_quotes_a_short_escaped_excerpt_of_the_input() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let sealed = Sealed::new(&suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "t"));
    let hostile = format!("<xml><Encrypt>&{}\nINFO forged line;</Encrypt></xml>", "A".repeat(800_000));
    let (status, reason) =
        app.post_raw(&format!("{}?{}", command_path(SUITE_ID), sealed.query()), hostile.into_bytes()).await;
    assert_eq!(status, 400, "{}", &reason[..reason.len().min(200)]);
    assert!(reason.len() < 300, "the reason is short: {} bytes", reason.len());
    assert!(!reason.contains('\n'), "{reason}");
    assert!(reason.starts_with("malformed envelope: malformed XML: "), "{reason}");
    assert!(app.events().await.is_empty());
    app.stop().await;
}

/// A NUL byte (which XML forbids and PostgreSQL text cannot hold) in one callback of
/// a concurrent batch is refused with 400 on both backends, and fails no other.
#[tokio::test]
async fn a_nul_byte_in_one_callback_of_a_batch_fails_only_that_one() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let keys = suite_keys();
    let posts = (0..60).map(|i| {
        let plaintext = match i {
            17 => change_contact_xml(i).replace("user17", "user\u{0}17"),
            33 => change_contact_xml(i).replace("wwCorpA", "wwCorp\u{0}A"),
            _ => change_contact_xml(i),
        };
        let sealed = Sealed::new(&keys, SUITE_ID, &plaintext);
        let app = &app;
        async move { app.post_raw(&format!("{}?{}", command_path(SUITE_ID), sealed.query()), sealed.body()).await }
    });
    let results = futures_util::future::join_all(posts).await;
    for (i, (status, body)) in results.iter().enumerate() {
        if i == 17 || i == 33 {
            assert_eq!((*status, body.as_str()), (400, "malformed message: malformed XML: NUL character"), "#{i}");
        } else {
            assert_eq!((*status, body.as_str()), (200, "success"), "#{i}");
        }
    }
    assert_eq!(app.events().await.len(), 58, "every other callback of the batch is stored");
    app.stop().await;
}

/// Sends raw bytes and reads the status line of the answer, or None if none came
/// within `wait`.
async fn raw_exchange(app: &TestApp, head_and_body: &[u8], wait: std::time::Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
    stream.write_all(head_and_body).await.expect("writes");
    let mut answer = vec![0u8; 512];
    let read = tokio::time::timeout(wait, stream.read(&mut answer)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&answer[..read]).into_owned();
    text.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn a_body_for_an_unknown_suite_is_refused_before_it_is_sent() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let head = "POST /callback/wwNoSuchSuite/command?msg_signature=a&timestamp=1&nonce=1 HTTP/1.1\r\n\
                Host: 127.0.0.1\r\nContent-Length: 1048576\r\n\r\n";
    let status = raw_exchange(&app, head.as_bytes(), std::time::Duration::from_secs(2)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 404 Not Found"), "answered without waiting for the body");
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_never_arrives_whole_is_refused_after_the_deadline() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let sealed = Sealed::new(&suite_keys(), SUITE_ID, &suite_ticket_xml(SUITE_ID, "slow"));
    let head = format!(
        "POST {}?{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n<xml><Encrypt>",
        command_path(SUITE_ID),
        sealed.query()
    );
    let started = std::time::Instant::now();
    let status = raw_exchange(&app, head.as_bytes(), std::time::Duration::from_secs(15)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_secs(9) && took < std::time::Duration::from_secs(13), "{took:?}");
    assert!(app.events().await.is_empty());
    app.stop().await;
}

/// A store that cannot take the write in time: the callback is answered 503 within
/// WeCom's 1 s instead of hanging, and WeCom's retry is stored once.
#[tokio::test]
async fn a_callback_the_store_cannot_take_in_time_is_answered_503_within_a_second() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, PgConnection, SqliteConnection};
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    // Another session holds the write lock.
    let mut blocker: Box<dyn SimpleConnection + Send> = match &db.url {
        wecom_provider::config::DatabaseUrl::Sqlite(path) => {
            let mut conn = SqliteConnection::establish(&path.display().to_string()).expect("sqlite opens");
            conn.batch_execute("BEGIN IMMEDIATE").expect("write lock");
            Box::new(conn)
        }
        wecom_provider::config::DatabaseUrl::Postgres(url) => {
            let mut conn = PgConnection::establish(url).expect("postgres answers");
            conn.batch_execute("BEGIN; LOCK TABLE events IN EXCLUSIVE MODE").expect("table lock");
            Box::new(conn)
        }
    };
    let plaintext = suite_ticket_xml(SUITE_ID, "blocked");
    let started = std::time::Instant::now();
    let (status, body) = app.post_callback_once(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &plaintext).await;
    let took = started.elapsed();
    assert_eq!((status, body.as_str()), (503, "storage too slow, try again"));
    assert!(took < std::time::Duration::from_secs(1), "answered within WeCom's deadline: {took:?}");
    blocker.batch_execute("COMMIT").expect("lock released");
    let (status, body) = app.post_callback(&command_path(SUITE_ID), &suite_keys(), SUITE_ID, &plaintext).await;
    assert_eq!((status, body.as_str()), (200, "success"), "WeCom's retry is acknowledged");
    let events = app.events().await;
    assert_eq!(events.len(), 1, "stored once: {events:?}");
    app.stop().await;
}
