use super::*;
use crate::identity::CorporateDomains;
use crate::seal::SealKeys;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use std::sync::atomic::{AtomicU32, Ordering};

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

#[test]
fn the_texts_say_the_groups_name_a_count_or_an_outcome_and_nothing_else() {
    let t = requests_waiting_text("Parents\r\nBcc: x@evil.example", 3);
    assert_eq!(
        t.subject,
        "3 requests to join Parents  Bcc: x@evil.example are waiting"
    );
    assert!(!t.subject.contains('\n'), "a name cannot add a header");
    assert_eq!(
        requests_waiting_text("Parents", 1).subject,
        "1 request to join Parents is waiting"
    );
    assert_eq!(
        request_decided_text("Parents", DecisionOutcome::Denied).subject,
        "Your request to join Parents was denied"
    );
    let bg = breakglass_waiting_text();
    assert_eq!(bg.subject, "A break-glass request waits for your approval");
    let m = String::from_utf8(render(
        &email("notifications@hush.test"),
        &email("owner@corp.example"),
        "tenant.test",
        &requests_waiting_text("Zürich team", 2),
    ))
    .unwrap();
    assert!(m.starts_with("From: Hush <notifications@hush.test>\r\nTo: <owner@corp.example>\r\n"));
    assert!(m.contains("Subject: =?utf-8?b?"), "{m}");
    assert!(m.contains("Auto-Submitted: auto-generated\r\n"));
    // The queue's flags byte comes first: 8BITMIME for a UTF-8 body.
    assert_eq!(
        written_for_queue(m.as_bytes())[0],
        crate::mail::listener::FLAG_8BITMIME
    );
    assert_eq!(written_for_queue(b"Subject: x\r\n\r\nx\r\n")[0], 0);
}

#[test]
fn owners_get_one_digest_per_interval_with_the_latest_count() {
    let mut limits = Limits::default();
    let g = GroupId::new();
    let other = GroupId::new();
    let t0 = Instant::now();
    let minute = Duration::from_secs(60);
    assert_eq!(digest_step(&mut limits, g, 1, t0, minute), Digesting::Now);
    let due = t0 + minute;
    assert_eq!(
        digest_step(&mut limits, g, 2, t0 + Duration::from_secs(1), minute),
        Digesting::Later(due)
    );
    assert_eq!(
        digest_step(&mut limits, g, 3, t0 + Duration::from_secs(2), minute),
        Digesting::Folded
    );
    assert_eq!(limits.digests[&g].owed, Some(3), "the latest count is owed");
    // Another group is its own.
    assert_eq!(
        digest_step(&mut limits, other, 1, t0, minute),
        Digesting::Now
    );
    // The interval ended but its task has not sent yet: it sends this count.
    assert_eq!(
        digest_step(&mut limits, g, 4, t0 + Duration::from_secs(61), minute),
        Digesting::Folded
    );
    assert_eq!(limits.digests[&g].owed, Some(4));
    // After a quiet interval, the next request is told at once.
    limits.digests.get_mut(&g).unwrap().owed = None;
    assert_eq!(
        digest_step(&mut limits, g, 1, t0 + Duration::from_secs(200), minute),
        Digesting::Now
    );
    // No interval: every call sends.
    assert_eq!(
        digest_step(
            &mut limits,
            g,
            1,
            t0 + Duration::from_secs(200),
            Duration::ZERO
        ),
        Digesting::Now
    );
}

#[test]
fn a_recipient_gets_at_most_the_hourly_limit() {
    let mut limits = Limits::default();
    let t0 = Instant::now();
    let a = email("a@corp.example");
    for _ in 0..3 {
        assert!(recipient_step(&mut limits, &a, t0, 3));
    }
    assert!(!recipient_step(&mut limits, &a, t0, 3));
    assert!(
        !recipient_step(&mut limits, &email("A@corp.example"), t0, 3),
        "case does not make a second recipient"
    );
    assert!(recipient_step(&mut limits, &email("b@corp.example"), t0, 3));
    assert!(recipient_step(&mut limits, &a, t0 + RECIPIENT_WINDOW, 3));
}

#[test]
fn the_signature_is_hmac_sha256_over_the_time_and_the_body() {
    // Computed independently, with Python's hmac:
    // hmac.new(b"0123456789abcdef", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert_eq!(
        signature(b"0123456789abcdef", 1_700_000_000, br#"{"a":1}"#),
        "t=1700000000,v1=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23"
    );
}

/// What the loopback receiver saw.
struct Received {
    bodies: tokio::sync::mpsc::UnboundedReceiver<(String, Bytes)>,
    calls: Arc<AtomicU32>,
}

/// A real HTTP receiver on loopback that checks each POST's signature with `secret` (and
/// answers 401 when it does not verify) and fails the first `fail_first` calls with 500.
async fn receiver(secret: &'static [u8], fail_first: u32) -> (String, Received) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let (tx, seen) = (tx.clone(), seen.clone());
            async move {
                let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                let sig = headers[SIGNATURE_HEADER].to_str().unwrap().to_string();
                let (t, v1) = sig.split_once(",v1=").unwrap();
                let t: i64 = t.strip_prefix("t=").unwrap().parse().unwrap();
                let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
                mac.update(format!("{t}.").as_bytes());
                mac.update(&body);
                if mac.verify_slice(&hex::decode(v1).unwrap()).is_err() {
                    return StatusCode::UNAUTHORIZED;
                }
                let age = time::OffsetDateTime::now_utc().unix_timestamp() - t;
                assert!((0..60).contains(&age), "a fresh timestamp");
                if n <= fail_first {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                tx.send((sig, body)).unwrap();
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, Received { bodies: rx, calls })
}

async fn notifier_with(dir: &std::path::Path, args: NotifyArgs) -> anyhow::Result<Notifier> {
    let keys = Arc::new(SealKeys::parse(&SealKeys::generate_text()).unwrap());
    let url = format!("sqlite://{}", dir.join("tenant.db").display());
    let corporate: CorporateDomains = "corp.example".parse().unwrap();
    crate::store::connect(&url, 2, keys.clone(), corporate)
        .await
        .unwrap();
    let mail = crate::mail::store::connect(&url, keys).await.unwrap();
    Notifier::new(&args, "tenant.test", mail)
}

const SECRET: &[u8] = b"a webhook secret of some length";

#[tokio::test]
async fn the_webhook_gets_a_signed_nameless_event_and_retries_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut got) = receiver(SECRET, 1).await;
    let secret_file = dir.path().join("webhook.secret");
    std::fs::write(&secret_file, [SECRET, b"\n"].concat()).unwrap();
    let notifier = notifier_with(
        dir.path(),
        NotifyArgs {
            webhook_url: Some(url),
            webhook_secret_file: Some(secret_file),
            officers: "officers@corp.example".into(),
            ..NotifyArgs::default()
        },
    )
    .await
    .unwrap();
    notifier.breakglass_waiting().await;
    let (sig, body) = tokio::time::timeout(Duration::from_secs(20), got.bodies.recv())
        .await
        .expect("the event arrives")
        .unwrap();
    assert!(sig.starts_with("t="), "{sig}");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"event": "breakglass-waiting"}),
        "no group, no person"
    );
    assert_eq!(
        got.calls.load(Ordering::SeqCst),
        2,
        "refused once, then taken"
    );
}

#[tokio::test]
async fn a_webhook_signed_with_another_secret_is_refused_by_the_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut got) = receiver(SECRET, 0).await;
    let secret_file = dir.path().join("webhook.secret");
    std::fs::write(&secret_file, b"another secret, not the receiver's").unwrap();
    let notifier = notifier_with(
        dir.path(),
        NotifyArgs {
            webhook_url: Some(url),
            webhook_secret_file: Some(secret_file),
            ..NotifyArgs::default()
        },
    )
    .await
    .unwrap();
    notifier.breakglass_waiting().await;
    // Every try is refused (401), so nothing is taken; the tries are bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.calls.load(Ordering::SeqCst) < WEBHOOK_ATTEMPTS {
        assert!(Instant::now() < deadline, "the tries arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(got.bodies.try_recv().is_err());
}

#[tokio::test]
async fn a_webhook_without_a_secret_or_with_a_short_one_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, b"too short").unwrap();
    let no_secret = notifier_with(
        dir.path(),
        NotifyArgs {
            webhook_url: Some("http://127.0.0.1:9/hook".into()),
            ..NotifyArgs::default()
        },
    )
    .await;
    assert!(no_secret.is_err());
    let short_secret = notifier_with(
        dir.path(),
        NotifyArgs {
            webhook_url: Some("http://127.0.0.1:9/hook".into()),
            webhook_secret_file: Some(short.clone()),
            ..NotifyArgs::default()
        },
    )
    .await;
    let e = short_secret.err().unwrap().to_string();
    assert!(e.contains("at least 16 bytes"), "{e}");
    assert!(!e.contains("too short"), "the secret is never in an error");
}
