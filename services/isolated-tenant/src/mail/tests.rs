//! The mail side against real mail software on loopback: Python's `smtplib` sends to the
//! tenant's listener, and `aiosmtpd` plays the corporate relay the copies go to. Each test runs
//! on SQLite, and again on Postgres (`postgres::…`, ignored unless run with `--include-ignored`
//! and `HUSH_TEST_POSTGRES_URL`).
//!
//! Python 3 with `aiosmtpd` and `dkimpy` is needed, so these tests are
//! `#[ignore = "needs python3 with aiosmtpd and dkimpy"]`: a plain `cargo test` lists them as
//! ignored, and `--include-ignored` (as `.ci/run` does, after installing the tools) runs them and
//! fails them if a tool is missing.

use super::store::{Inbound, MailStore};
use super::*;
use crate::audit::Context;
use crate::store::{self as tenant_store, Store};
use domain::{Email, GroupId, GroupName, SenderPolicy, Subject};
use service_kit::testing::TestDatabase;
use std::process::Command;
use std::time::Instant;
use tenant_api::{AddMember, MemberRef, ProvisionGroup};

use crate::testing::{send, PyRelay, SCRIPTS};
const MEMBER_DOMAIN: &str = "members.test.example";
const GROUP_DOMAIN: &str = "groups.test.example";

/// The label the seeded groups carry.
fn general() -> domain::Label {
    domain::Label::defaults()
        .into_iter()
        .find(|l| l.name.as_str() == "General")
        .unwrap()
}

/// A tenant database with a group, and the mail store over it.
struct Fixture {
    database: TestDatabase,
    keys: Arc<SealKeys>,
    store: Arc<dyn Store>,
    mail: Arc<dyn MailStore>,
    group: GroupId,
    address: String,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(database: TestDatabase, policy: SenderPolicy) -> Self {
        let keys = Arc::new(SealKeys::parse(&SealKeys::generate_text()).unwrap());
        let corporate: CorporateDomains = "corp.example".parse().unwrap();
        let store = tenant_store::connect(database.url(), 4, keys.clone(), corporate)
            .await
            .unwrap();
        let mail = store::connect(database.url(), keys.clone()).await.unwrap();
        let group = GroupId::new();
        let address = "erg@groups.test.example".to_string();
        store
            .provision_group(
                &Context::tenant(),
                &ProvisionGroup {
                    group_id: group,
                    address: Email::parse(&address).unwrap(),
                    display_name: GroupName::parse("Employee Resource Group").unwrap(),
                    sender_policy: None,
                    anonymous_posting: false,
                    owners: vec![],
                    label: None,
                    group_type: domain::GroupType::Mail,
                },
            )
            .await
            .unwrap();
        mail.set_policy(
            &Context::tenant(),
            group,
            policy,
            false,
            &[Subject::parse("owner-1").unwrap()],
        )
        .await
        .unwrap();
        Self {
            database,
            keys,
            store,
            mail,
            group,
            address,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn args(&self, relay: Option<Relay>) -> MailArgs {
        MailArgs {
            listen: Some(([127, 0, 0, 1], 0).into()),
            relay,
            max_message_bytes: 64 * 1024,
            bounce_domain: "bounces.test.example".into(),
            retry_base_secs: 1,
            // aiosmtpd without TLS on loopback; the relay tests below set TLS up.
            outbound: relay::RelayArgs::plaintext(),
            // The test's senders stand in for the corporate relay, which authenticated them.
            trusted_relays: vec!["127.0.0.0/8".parse().unwrap()],
            ..MailArgs::default()
        }
    }

    /// Starts the listener (and workers, with a relay) over this database.
    async fn start(&self, relay: Option<Relay>) -> MailService {
        self.start_signing(relay, None).await
    }

    /// [`Self::start`], signing with `dkim`.
    async fn start_signing(
        &self,
        relay: Option<Relay>,
        dkim: Option<dkim::DkimSigner>,
    ) -> MailService {
        let args = self.args(relay);
        let listener = tokio::net::TcpListener::bind(args.listen.unwrap())
            .await
            .unwrap();
        let mail = store::connect(self.database.url(), self.keys.clone())
            .await
            .unwrap();
        start_on(
            MailContext::new(&args, mail, "corp.example".parse().unwrap()).with_dkim(dkim),
            listener,
        )
    }

    /// Runs one delivery worker over this database until nothing is due: the test waits for
    /// the work, not for time to pass. Answers the deliveries it attempted.
    async fn drain(&self, relay: Relay) -> usize {
        let mail = store::connect(self.database.url(), self.keys.clone())
            .await
            .unwrap();
        let ctx = MailContext::new(
            &self.args(Some(relay.clone())),
            mail,
            "corp.example".parse().unwrap(),
        );
        delivery::drain_until_idle(ctx, relay).await.unwrap()
    }

    /// Waits until the running workers have drained the queue: every delivery has ended (sent
    /// or given up), so nothing more will reach the relay.
    async fn drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let queued = self.mail.counts().await.unwrap().queued_deliveries;
            if queued == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{queued} deliveries still queued"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn seed(&self, n: usize) -> Vec<String> {
        let members: Vec<Email> = (0..n)
            .map(|i| Email::parse(format!("m{i:06}@{MEMBER_DOMAIN}")).unwrap())
            .collect();
        // Through the tenant's own set-based batch path: label checked, audited, as bulk jobs.
        for chunk in members.chunks(10_000) {
            let batch = tenant_api::ApplyBatch::add_all(self.group, general(), chunk);
            let out = self
                .store
                .apply_batch(&Context::tenant(), &batch)
                .await
                .unwrap();
            assert_eq!(out.applied, chunk.len() as u64);
        }
        members.iter().map(|e| e.as_str().to_string()).collect()
    }

    /// Lets (or stops letting) members post anonymously through the group's alias, as a
    /// label change pushed by control-api does.
    async fn allow_anonymous(&self, allowed: bool) {
        self.mail
            .set_policy(
                &Context::tenant(),
                self.group,
                SenderPolicy::Anyone,
                allowed,
                &[Subject::parse("owner-1").unwrap()],
            )
            .await
            .unwrap();
    }

    async fn finish(self) {
        drop(self.store);
        drop(self.mail);
        self.database.remove().await;
    }
}

/// A 2048-bit RSA key made by openssl in `dir` (PKCS#1 PEM with `pkcs1`, else PKCS#8).
fn rsa_key_file(dir: &std::path::Path, name: &str, pkcs1: bool) -> std::path::PathBuf {
    let path = dir.join(name);
    let out = if pkcs1 {
        Command::new("openssl")
            .args(["genrsa", "-traditional", "-out"])
            .arg(&path)
            .arg("2048")
            .output()
    } else {
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&path)
            .output()
    }
    .expect("openssl makes the test key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// The group domain's signer, loaded as `HUSH_MAIL_DKIM_KEY_FILE` is.
fn group_signer(dir: &std::path::Path, selector: &str) -> dkim::DkimSigner {
    let key = rsa_key_file(dir, &format!("{selector}.pem"), false);
    dkim::DkimSigner::load(GROUP_DOMAIN, selector, &key).unwrap()
}

/// Runs `dkim_verify.py` (dkimpy) on `text`: whether it verifies, and what it said.
fn dkimpy(dir: &std::path::Path, text: &str, key: &str, extra: &[&str]) -> (bool, String) {
    let path = dir.join(format!("{}.eml", uuid::Uuid::new_v4()));
    std::fs::write(&path, text).unwrap();
    let out = Command::new("python3")
        .arg(format!("{SCRIPTS}/dkim_verify.py"))
        .arg(&path)
        .arg(key)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The relay on loopback at `addr`, by address (plaintext: see [`Fixture::args`]).
fn smtp(addr: std::net::SocketAddr) -> Relay {
    Relay::Smtp(addr.to_string().parse().unwrap())
}

fn message(subject: &str, body_len: usize) -> String {
    format!(
        "From: Alice <alice@corp.example>\r\nTo: ERG <erg@{GROUP_DOMAIN}>\r\nCc: bob@corp.example\r\n\
         Bcc: carol@corp.example\r\nSubject: {subject}\r\nMessage-ID: <{}@corp.example>\r\n\
         Disposition-Notification-To: alice@corp.example\r\nReturn-Receipt-To: alice@corp.example\r\n\
         X-Confirm-Reading-To: alice@corp.example\r\nDelivered-To: erg@{GROUP_DOMAIN}\r\n\
         X-Original-To: erg@{GROUP_DOMAIN}\r\n\r\nHello everyone.\r\n.leading dot\r\n{}\r\n",
        uuid::Uuid::new_v4(),
        "x".repeat(body_len)
    )
}

/// Generates each test on SQLite and on Postgres (ignored unless asked for: it needs
/// `HUSH_TEST_POSTGRES_URL`, and fails without it). Only the wrappers: the body is the test's.
macro_rules! on_both_backends {
    ($(async fn $name:ident($db:ident) $body:block)*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs python3 with aiosmtpd and dkimpy"]
                async fn $name() {
                    service_kit::testing::require_mail_tools();
                    let $db = TestDatabase::sqlite();
                    $body
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs HUSH_TEST_POSTGRES_URL and python3 with aiosmtpd and dkimpy"]
                async fn $name() {
                    service_kit::testing::require_mail_tools();
                    let $db = TestDatabase::postgres().await;
                    $body
                }
            )*
        }
    };
}

on_both_backends! {
    async fn inv7_ten_thousand_members_get_one_copy_each_and_no_header_names_a_member(db) {
        let fx = Fixture::new(db, SenderPolicy::Anyone).await;
        let members = fx.seed(10_000).await;
        let relay = PyRelay::start(fx.dir.path());
        let svc = fx.start(Some(smtp(relay.addr()))).await;

        let verdict = send(svc.addr, "alice@corp.example", &[&fx.address], &message("hello", 10), &[]).await;
        assert_eq!(verdict["ok"], true, "{verdict}");

        let received = relay.wait_for(members.len(), Duration::from_secs(120)).await;
        // Exactly one copy each: every member once, nobody else.
        let mut got: Vec<String> = received
            .iter()
            .flat_map(|m| m["rcpts"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()))
            .collect();
        got.sort();
        assert_eq!(got, members, "every member exactly once");
        for m in &received {
            let data = m["data"].as_str().unwrap();
            let (head, body) = data.split_once("\r\n\r\n").unwrap();
            // No member address in any header: not even the domain they share.
            assert!(!head.contains(MEMBER_DOMAIN), "a header names a member:\n{head}");
            for gone in ["Bcc:", "carol@", "Disposition-Notification-To", "Return-Receipt-To",
                         "X-Confirm-Reading-To", "Delivered-To", "X-Original-To"] {
                assert!(!head.contains(gone), "{gone} left in:\n{head}");
            }
            assert!(head.contains("List-Id: \"Employee Resource Group\" <erg.groups.test.example>"));
            assert!(head.contains("List-Post: <mailto:erg@groups.test.example>"));
            assert!(head.contains("Precedence: list"));
            assert!(head.contains("To: ERG <erg@groups.test.example>"));
            assert!(head.contains("Cc: bob@corp.example"));
            assert!(body.contains("\r\n.leading dot\r\n"), "dot-stuffing undone once");
            // The envelope sender is an opaque bounce address of the tenant's.
            let from = m["from"].as_str().unwrap();
            assert!(from.starts_with("bounce+") && from.ends_with("@bounces.test.example"), "{from}");
            assert!(!from.contains("alice") && !from.contains(MEMBER_DOMAIN));
        }
        // Each relay transaction has its own token.
        let mut tokens: Vec<&str> = received.iter().map(|m| m["from"].as_str().unwrap()).collect();
        tokens.sort_unstable();
        tokens.dedup();
        assert_eq!(tokens.len(), received.len());
        // Nothing more arrives, and the operators' counts agree.
        fx.drained().await;
        assert_eq!(relay.recipients().len(), members.len());
        let counts = fx.mail.counts().await.unwrap();
        assert_eq!(counts.delivered_recipients, 10_000);
        assert_eq!(counts.queued_deliveries, 0);
        drop(svc);
        fx.finish().await;
    }

    async fn inv4_operators_mail_counts_move_alike_for_a_group_of_one_and_a_group_of_250(db) {
        // An operator who may mail a group posts to it and reads the mail status before and
        // after: what they read must not depend on the group's size.
        let fx = Fixture::new(db, SenderPolicy::Anyone).await;
        let operators = |c: &store::QueueCounts| {
            serde_json::to_value(c.for_operators(tenant_api::RelayStatus::default())).unwrap()
        };
        let delta = |a: &serde_json::Value, b: &serde_json::Value| {
            let mut d = serde_json::Map::new();
            for (k, v) in b.as_object().unwrap() {
                if let (Some(x), Some(y)) = (a[k].as_i64(), v.as_i64()) {
                    d.insert(k.clone(), (y - x).into());
                }
            }
            serde_json::Value::Object(d)
        };
        let batch = 100;
        fx.seed(1).await;
        let before = fx.mail.counts().await.unwrap();
        fx.mail.accept(fx.group, message("one", 1).as_bytes(), batch).await.unwrap();
        let after_one = fx.mail.counts().await.unwrap();
        // The same group grown to 250: the next post takes three relay transactions.
        let grown: Vec<Email> = (1..250)
            .map(|i| Email::parse(format!("n{i:06}@{MEMBER_DOMAIN}")).unwrap())
            .collect();
        let out = fx
            .store
            .apply_batch(&Context::tenant(), &tenant_api::ApplyBatch::add_all(fx.group, general(), &grown))
            .await
            .unwrap();
        assert_eq!(out.applied, 249);
        fx.mail.accept(fx.group, message("many", 1).as_bytes(), batch).await.unwrap();
        let after_many = fx.mail.counts().await.unwrap();
        // The check can see: inside the tenant the two posts differ by size.
        assert_eq!(after_one.queued_deliveries - before.queued_deliveries, 1);
        assert_eq!(after_many.queued_deliveries - after_one.queued_deliveries, 3);
        assert_eq!(after_many.queued_recipients - after_one.queued_recipients, 250);
        // What operators read moves by one message either way.
        let (b, one, many) = (operators(&before), operators(&after_one), operators(&after_many));
        assert_eq!(delta(&b, &one), delta(&one, &many), "{b} → {one} → {many}");
        assert_eq!(delta(&b, &one)["queued_messages"], 1);
        fx.finish().await;
    }

    async fn unknown_recipients_oversize_and_refused_senders_are_turned_away(db) {
        let fx = Fixture::new(db, SenderPolicy::Members).await;
        fx.seed(3).await;
        let svc = fx.start(None).await;
        let member = format!("m000001@{MEMBER_DOMAIN}");
        let unknown = send(svc.addr, &member, &["nobody@groups.test.example"], &message("x", 1), &[]).await;
        assert_eq!((unknown["step"].as_str(), unknown["code"].as_i64()), (Some("rcpt"), Some(550)), "{unknown}");
        // Over the size limit: refused at MAIL when SIZE is declared, after DATA when not.
        let big = message("big", 70 * 1024);
        let declared = send(svc.addr, &member, &[&fx.address], &big, &[]).await;
        assert_eq!((declared["step"].as_str(), declared["code"].as_i64()), (Some("mail"), Some(552)), "{declared}");
        let undeclared = send(svc.addr, &member, &[&fx.address], &big, &["--no-size"]).await;
        assert_eq!((undeclared["step"].as_str(), undeclared["code"].as_i64()), (Some("data"), Some(552)), "{undeclared}");
        // Members only: a member and a stranger hear the same; the member's message is queued
        // for the members, the stranger's is dropped and a notice goes to the stranger alone.
        let ok = send(svc.addr, &member, &[&fx.address], &message("ok", 1), &[]).await;
        assert_eq!(ok["ok"], true, "{ok}");
        let stranger = send(svc.addr, "mallory@corp.example", &[&fx.address], &message("no", 1), &[]).await;
        assert_eq!(stranger["ok"], true, "{stranger}");
        let counts = fx.mail.counts().await.unwrap();
        assert_eq!(counts.queued_recipients, 3 + 1, "the member's message, and one notice");
        assert_eq!(counts.refused_messages, 1);
        drop(svc);
        fx.finish().await;
    }

    async fn bounces_and_out_of_office_replies_stop_at_the_tenant(db) {
        let fx = Fixture::new(db, SenderPolicy::Anyone).await;
        fx.seed(5).await;
        let relay = PyRelay::start(fx.dir.path());
        let svc = fx.start(Some(smtp(relay.addr()))).await;
        let sent = send(svc.addr, "alice@corp.example", &[&fx.address], &message("hi", 1), &[]).await;
        assert_eq!(sent["ok"], true);
        let received = relay.wait_for(5, Duration::from_secs(30)).await;
        let bounce_to = received[0]["from"].as_str().unwrap().to_string();

        let ooo = "From: m000002@members.test.example\r\nTo: alice@corp.example\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n";
        let r = send(svc.addr, &format!("m000002@{MEMBER_DOMAIN}"), &[&bounce_to], ooo, &[]).await;
        assert_eq!(r["ok"], true, "{r}");
        let dsn = format!("From: MAILER-DAEMON@relay.corp.example\r\nTo: {bounce_to}\r\nSubject: Undelivered\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.corp.example\r\n\r\nFinal-Recipient: rfc822; m000003@{MEMBER_DOMAIN}\r\nAction: failed\r\nStatus: 5.1.1\r\n--b--\r\n");
        let r = send(svc.addr, "<>", &[&bounce_to], &dsn, &[]).await;
        assert_eq!(r["ok"], true, "{r}");
        // An auto-reply sent to the group itself is consumed too, never expanded (RFC 3834).
        let r = send(svc.addr, "alice@corp.example", &[&fx.address], ooo, &[]).await;
        assert_eq!(r["ok"], true, "{r}");

        fx.drained().await;
        assert_eq!(relay.recipients().len(), 5, "nothing went further than the tenant");
        assert_eq!(relay.received().len(), received.len());
        let counts = fx.mail.counts().await.unwrap();
        assert_eq!(counts.bounces_consumed, 1);
        assert_eq!(counts.auto_replies_consumed, 2);
        drop(svc);
        fx.finish().await;
    }

    async fn a_message_accepted_before_a_crash_is_delivered_once_after_restart(db) {
        let fx = Fixture::new(db, SenderPolicy::Anyone).await;
        let members = fx.seed(250).await;
        // No relay: accepted and queued, nothing sent.
        let first = fx.start(None).await;
        let r = send(first.addr, "alice@corp.example", &[&fx.address], &message("survives", 1), &[]).await;
        assert_eq!(r["ok"], true);
        first.abort();
        drop(first);
        // The restarted tenant's worker, run until its queue is empty.
        let relay = PyRelay::start(fx.dir.path());
        assert!(fx.drain(smtp(relay.addr())).await > 0);
        assert_eq!(relay.recipients().len(), members.len(), "each member exactly once");
        assert_eq!(fx.mail.counts().await.unwrap().queued_deliveries, 0);
        fx.finish().await;
    }

    async fn hard_bounces_from_the_relay_mark_an_address_bad_and_it_is_skipped(db) {
        let fx = Fixture::new(db, SenderPolicy::Anyone).await;
        fx.seed(2).await;
        // The relay refuses nothing, so count hard bounces straight through the store: with a
        // limit of one, a DSN for an address the delivery went to marks it bad, and the next
        // expansion skips it. (The same DSN three times counts once: see
        // `a_forged_bounce_counts_only_for_an_address_its_delivery_went_to`.)
        let relay = PyRelay::start(fx.dir.path());
        let svc = fx.start(Some(smtp(relay.addr()))).await;
        send(svc.addr, "alice@corp.example", &[&fx.address], &message("a", 1), &[]).await;
        let received = relay.wait_for(2, Duration::from_secs(30)).await;
        let token = received[0]["from"].as_str().unwrap()
            .strip_prefix("bounce+").unwrap().split('@').next().unwrap().to_string();
        let gone = vec![format!("m000000@{MEMBER_DOMAIN}")];
        for _ in 0..3 {
            fx.mail.consume(Inbound::Bounce, Some(&token), &gone, 1).await.unwrap();
        }
        // A forged token counts the bounce but marks nothing.
        fx.mail.consume(Inbound::Bounce, Some("00000000000000000000000000000000"), &[format!("m000001@{MEMBER_DOMAIN}")], 1).await.unwrap();
        assert_eq!(fx.mail.counts().await.unwrap().bad_addresses, 1);
        send(svc.addr, "alice@corp.example", &[&fx.address], &message("b", 1), &[]).await;
        relay.wait_for(3, Duration::from_secs(30)).await;
        fx.drained().await;
        let last = relay.received().pop().unwrap();
        assert_eq!(last["rcpts"], serde_json::json!([format!("m000001@{MEMBER_DOMAIN}")]));
        drop(svc);
        fx.finish().await;
    }

    async fn owners_only_admits_the_owners_address_and_nobody_else(db) {
        let fx = Fixture::new(db, SenderPolicy::Owners).await;
        // The owner is known to the tenant with subject and address (seen with a token).
        let other = GroupId::new();
        fx.store.provision_group(&Context::tenant(), &ProvisionGroup {
            group_id: other,
            address: Email::parse("other@groups.test.example").unwrap(),
            display_name: GroupName::parse("Other").unwrap(),
            sender_policy: None,
            anonymous_posting: false,
            owners: vec![],
            label: None,
            group_type: domain::GroupType::Mail,
        }).await.unwrap();
        fx.store.add_member(&Context::tenant(), other, &AddMember {
            member: MemberRef {
                subject: Some(Subject::parse("owner-1").unwrap()),
                email: Some(Email::parse("olga@corp.example").unwrap()),
                kind: None,
            },
            label: domain::Label::defaults().remove(0),
        }).await.unwrap();
        let svc = fx.start(None).await;
        let owner = send(svc.addr, "olga@corp.example", &[&fx.address], &message("o", 1), &[]).await;
        assert_eq!(owner["ok"], true, "{owner}");
        let not_owner = send(svc.addr, "alice@corp.example", &[&fx.address], &message("o", 1), &[]).await;
        assert_eq!(not_owner["ok"], true, "answered alike: {not_owner}");
        assert_eq!(fx.mail.counts().await.unwrap().refused_messages, 1, "and dropped");
        drop(svc);
        fx.finish().await;
    }

    async fn the_copies_carry_a_dkim_signature_that_dkimpy_verifies(db) {
        let fx = Fixture::new(db, SenderPolicy::Anyone).await;
        fx.seed(2).await;
        let signer = group_signer(fx.dir.path(), "hush2026");
        let public = signer.dns_record().to_string();
        let relay = PyRelay::start(fx.dir.path());
        let svc = fx.start_signing(Some(smtp(relay.addr())), Some(signer)).await;
        let r = send(svc.addr, "alice@corp.example", &[&fx.address], &message("signed", 100), &[]).await;
        assert_eq!(r["ok"], true);
        let received = relay.wait_for(2, Duration::from_secs(30)).await;
        let data = received[0]["data"].as_str().unwrap();
        assert!(data.starts_with("DKIM-Signature: "), "{data}");
        let head = data.split("\r\n\r\n").next().unwrap();
        for tag in ["a=rsa-sha256", "c=relaxed/relaxed", "d=groups.test.example", "s=hush2026"] {
            assert!(head.contains(tag), "{tag} missing: {head}");
        }
        let verify = |text: &str| dkimpy(fx.dir.path(), text, &public, &[]).0;
        assert!(verify(data), "dkimpy does not verify the copy");
        // The check checks: a changed body fails.
        assert!(!verify(&data.replace("Hello everyone.", "Hello, everyone.")));
        drop(svc);
        fx.finish().await;
    }

    async fn smtp_answers_alike_for_member_stranger_and_forged_senders_byte_for_byte(db) {
        let fx = Fixture::new(db, SenderPolicy::Members).await;
        let members = fx.seed(3).await;
        let member = members[0].clone();
        let stranger = "mallory@corp.example".to_string();
        let conversation = |from: &str| {
            vec![
                "EHLO relay.corp.example".to_string(),
                format!("MAIL FROM:<{from}>"),
                format!("RCPT TO:<{}>", fx.address),
                "DATA".to_string(),
                "From: <someone@corp.example>\r\nSubject: hello\r\n\r\nHello.\r\n.".to_string(),
                "QUIT".to_string(),
            ]
        };
        // Untrusted peer: whoever the envelope names, it is a claim. The listener answers the
        // same bytes and makes no lookup; nothing is queued and nobody is told.
        let untrusted = MailArgs { trusted_relays: vec![], ..fx.args(None) };
        let svc = start_on(
            MailContext::new(&untrusted, fx.mail.clone(), "corp.example".parse().unwrap()),
            tokio::net::TcpListener::bind(untrusted.listen.unwrap()).await.unwrap(),
        );
        let forged_member = transcript(svc.addr, &conversation(&member)).await;
        let forged_stranger = transcript(svc.addr, &conversation(&stranger)).await;
        assert_eq!(forged_member, forged_stranger, "byte for byte");
        assert!(forged_member.contains("250 2.0.0 OK: queued"), "{forged_member}");
        let counts = fx.mail.counts().await.unwrap();
        assert_eq!((counts.queued_deliveries, counts.refused_messages), (0, 2), "{counts:?}");
        drop(svc);

        // A trusted relay (the sender is authenticated): member and stranger still hear the
        // same bytes, the same as above. The member's message goes to the members; the
        // stranger's is dropped and the stranger alone gets a notice.
        let sink = fx.dir.path().join("mail");
        let svc = fx.start(None).await;
        let member_said = transcript(svc.addr, &conversation(&member)).await;
        let stranger_said = transcript(svc.addr, &conversation(&stranger)).await;
        assert_eq!(member_said, stranger_said, "byte for byte");
        assert_eq!(member_said, forged_member, "and as for an untrusted peer");
        assert_eq!(fx.mail.counts().await.unwrap().refused_messages, 3);
        drop(svc);
        fx.drain(Relay::Maildir(sink.clone())).await;
        let inbox = |who: &str| -> Vec<String> {
            std::fs::read_dir(sink.join(who).join("new"))
                .map(|d| d.map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap()).collect())
                .unwrap_or_default()
        };
        for m in &members {
            let got = inbox(m);
            assert_eq!(got.len(), 1, "{m} gets the member's message, once");
            assert!(got[0].contains("Subject: hello"));
        }
        let notice = inbox(&stranger);
        assert_eq!(notice.len(), 1, "the stranger gets one notice");
        assert!(notice[0].contains("was not delivered: only the group's members may write to it"), "{}", notice[0]);
        for m in &members {
            assert!(!notice[0].contains(m.as_str()), "the notice names no member");
        }
        let folders = std::fs::read_dir(&sink).unwrap().count();
        assert_eq!(folders, members.len() + 1, "nobody else got anything");
        fx.finish().await;
    }

    async fn the_anonymous_alias_answers_alike_for_member_stranger_outsider_and_when_off(db) {
        // An `anyone` group: its own address refuses an outsider at RCPT, its alias does not.
        let fx = Fixture::new(db, SenderPolicy::Anyone).await;
        fx.allow_anonymous(true).await;
        let members = fx.seed(3).await;
        let member = members[0].clone();
        let alias = domain::anonymous_alias(&Email::parse(&fx.address).unwrap()).unwrap();
        let conversation = |from: &str| {
            vec![
                "EHLO relay.corp.example".to_string(),
                format!("MAIL FROM:<{from}>"),
                format!("RCPT TO:<{alias}>"),
                "DATA".to_string(),
                format!("From: Pat Quimby <{from}>\r\nX-Mailer: Quimby's mailer\r\nSubject: hello\r\n\r\nHello.\r\n."),
                "QUIT".to_string(),
            ]
        };
        let sink = fx.dir.path().join("mail");
        let svc = fx.start(None).await;
        let member_said = transcript(svc.addr, &conversation(&member)).await;
        let stranger = "mallory@corp.example";
        let outsider = "eve@elsewhere.example";
        assert_eq!(member_said, transcript(svc.addr, &conversation(stranger)).await, "byte for byte");
        assert_eq!(member_said, transcript(svc.addr, &conversation(outsider)).await, "byte for byte");
        assert!(member_said.contains("250 2.0.0 OK: queued"), "{member_said}");
        // The label stops allowing it: the alias answers the member the same bytes again.
        fx.allow_anonymous(false).await;
        assert_eq!(member_said, transcript(svc.addr, &conversation(&member)).await, "byte for byte");
        drop(svc);
        fx.drain(Relay::Maildir(sink.clone())).await;
        let inbox = |who: &str| -> Vec<String> {
            let mut got: Vec<String> = std::fs::read_dir(sink.join(who).join("new"))
                .map(|d| d.map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap()).collect())
                .unwrap_or_default();
            got.sort_by_key(|m| m.contains("Mail Delivery System"));
            got
        };
        let from = format!("From: \"Anonymous member of Employee Resource Group\" <{alias}>\r\n");
        for m in &members {
            let got = inbox(m);
            assert!(got[0].contains(&from), "{m} gets the anonymous post: {}", got[0]);
            for trace in ["Quimby", member.as_str(), "X-Mailer"] {
                assert!(!got[0].contains(trace), "{trace} in {m}'s copy:\n{}", got[0]);
            }
            // Its poster also gets the notice that the alias no longer takes posts.
            assert_eq!(got.len(), if *m == member { 2 } else { 1 }, "{m}: {got:?}");
        }
        assert!(inbox(&member)[1].contains("the group does not take anonymous posts"), "{:?}", inbox(&member));
        for who in [stranger, outsider] {
            let notice = inbox(who);
            assert_eq!(notice.len(), 1, "{who} gets one notice");
            assert!(notice[0].contains("only the group's members may write to it"), "{}", notice[0]);
        }
        let folders = std::fs::read_dir(&sink).unwrap().count();
        assert_eq!(folders, members.len() + 2, "nobody else got anything");
        fx.finish().await;
    }

    async fn a_security_groups_address_is_answered_like_an_unknown_one_and_takes_no_mail(db) {
        // The mail group of the fixture, and a security group with the same members. Its
        // address is even put on the mail domain here (the catalog gives a security group a
        // reserved, never-routable one): the type alone keeps mail out.
        let fx = Fixture::new(db, SenderPolicy::Anyone).await;
        let members = fx.seed(3).await;
        let security = GroupId::new();
        let security_address = format!("access-reports@{GROUP_DOMAIN}");
        fx.store
            .provision_group(
                &Context::tenant(),
                &ProvisionGroup {
                    group_id: security,
                    address: Email::parse(&security_address).unwrap(),
                    display_name: GroupName::parse("Access to reports").unwrap(),
                    sender_policy: None,
                    anonymous_posting: false,
                    owners: vec![],
                    label: None,
                    group_type: domain::GroupType::Security,
                },
            )
            .await
            .unwrap();
        // Even a mail policy written for it (anyone, anonymous posting on) opens nothing.
        fx.mail
            .set_policy(&Context::tenant(), security, SenderPolicy::Anyone, true, &[])
            .await
            .unwrap();
        let emails: Vec<Email> = members.iter().map(|m| Email::parse(m).unwrap()).collect();
        let batch = tenant_api::ApplyBatch::add_all(security, general(), &emails);
        assert_eq!(fx.store.apply_batch(&Context::tenant(), &batch).await.unwrap().applied, 3);
        let alias = domain::anonymous_alias(&Email::parse(&security_address).unwrap()).unwrap();

        let conversation = |to: &str| {
            vec![
                "EHLO relay.corp.example".to_string(),
                "MAIL FROM:<alice@corp.example>".to_string(),
                format!("RCPT TO:<{to}>"),
                "DATA".to_string(),
                "QUIT".to_string(),
            ]
        };
        let sink = fx.dir.path().join("mail");
        let svc = fx.start(None).await;
        let unknown = transcript(svc.addr, &conversation(&format!("nobody@{GROUP_DOMAIN}"))).await;
        assert!(unknown.contains("550 5.1.1"), "{unknown}");
        for to in [security_address.as_str(), alias.as_str()] {
            assert_eq!(transcript(svc.addr, &conversation(to)).await, unknown, "{to}: byte for byte");
        }
        // Named beside the mail group, the security group is refused and the message reaches
        // the mail group's members once each, through the mail group only.
        let both = transcript(svc.addr, &[
            "EHLO relay.corp.example".to_string(),
            "MAIL FROM:<alice@corp.example>".to_string(),
            format!("RCPT TO:<{security_address}>"),
            format!("RCPT TO:<{}>", fx.address),
            "DATA".to_string(),
            "From: <alice@corp.example>\r\nSubject: both\r\n\r\nHello.\r\n.".to_string(),
            "QUIT".to_string(),
        ]).await;
        assert!(both.contains("550 5.1.1") && both.contains("250 2.0.0 OK: queued"), "{both}");
        let counts = fx.mail.counts().await.unwrap();
        assert_eq!(counts.queued_recipients, 3, "{counts:?}");
        drop(svc);
        fx.drain(Relay::Maildir(sink.clone())).await;
        for m in &members {
            let got = std::fs::read_dir(sink.join(m).join("new")).unwrap().count();
            assert_eq!(got, 1, "{m}: one copy, from the mail group");
        }
        assert_eq!(std::fs::read_dir(&sink).unwrap().count(), members.len(), "nobody else got anything");
        fx.finish().await;
    }

    async fn a_message_to_a_group_and_its_alias_at_once_goes_out_once_anonymously(db) {
        // Members only, so the members (outside the corporate domains) may write to both.
        let fx = Fixture::new(db, SenderPolicy::Members).await;
        let owners = [Subject::parse("owner-1").unwrap()];
        fx.mail
            .set_policy(&Context::tenant(), fx.group, SenderPolicy::Members, true, &owners)
            .await
            .unwrap();
        let members = fx.seed(2).await;
        let alias = domain::anonymous_alias(&Email::parse(&fx.address).unwrap()).unwrap();
        let sink = fx.dir.path().join("mail");
        let svc = fx.start(None).await;
        // Both orders: the alias named first, and the group's address named first.
        for rcpts in [[alias.as_str(), fx.address.as_str()], [fx.address.as_str(), alias.as_str()]] {
            let r = send(svc.addr, &members[0], &rcpts, &message("both", 1), &[]).await;
            assert_eq!(r["ok"], true, "{r}");
        }
        drop(svc);
        fx.drain(Relay::Maildir(sink.clone())).await;
        for m in &members {
            let got: Vec<String> = std::fs::read_dir(sink.join(m).join("new"))
                .unwrap()
                .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
                .collect();
            assert_eq!(got.len(), 2, "{m}: one copy a message, not two");
            for copy in &got {
                assert!(copy.contains("From: \"Anonymous member of Employee Resource Group\""), "{copy}");
                assert!(!copy.contains("Alice"), "{copy}");
            }
        }
        fx.finish().await;
    }

    async fn the_maildir_sink_files_one_copy_per_recipient(db) {
        let fx = Fixture::new(db, SenderPolicy::Anyone).await;
        let members = fx.seed(3).await;
        let sink = fx.dir.path().join("mail");
        let svc = fx.start(Some(Relay::Maildir(sink.clone()))).await;
        let r = send(svc.addr, "alice@corp.example", &[&fx.address], &message("sink", 1), &[]).await;
        assert_eq!(r["ok"], true);
        let start = Instant::now();
        for m in &members {
            let new = sink.join(m).join("new");
            while std::fs::read_dir(&new).map_or(0, Iterator::count) < 1 {
                assert!(start.elapsed() < Duration::from_secs(30), "no copy for {m}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let files: Vec<_> = std::fs::read_dir(&new).unwrap().collect();
            assert_eq!(files.len(), 1);
            let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
            assert!(text.starts_with("Return-Path: <bounce+"));
            assert!(!text.split("\r\n\r\n").next().unwrap().contains(MEMBER_DOMAIN));
        }
        drop(svc);
        fx.finish().await;
    }

    async fn finished_deliveries_are_deleted_after_their_retention_and_queued_ones_never(db) {
        let fx = Fixture::new(db, SenderPolicy::Anyone).await;
        fx.seed(3).await;
        let sink = fx.dir.path().join("mail");
        let svc = fx.start(None).await;
        let r = send(svc.addr, "alice@corp.example", &[&fx.address], &message("old", 1), &[]).await;
        assert_eq!(r["ok"], true);
        fx.drain(Relay::Maildir(sink)).await;
        // A second message stays queued: no worker runs.
        let r = send(svc.addr, "alice@corp.example", &[&fx.address], &message("waiting", 1), &[]).await;
        assert_eq!(r["ok"], true);
        drop(svc);
        let before = fx.mail.counts().await.unwrap();
        assert_eq!((before.delivered_recipients, before.queued_recipients), (3, 3), "{before:?}");
        let now = service_kit::db::now_ms();
        // Within the retention (the defaults, at this moment): nothing goes.
        let (delivered, dead) = delivery::purge_cutoffs(&MailArgs::default(), now);
        assert_eq!(fx.mail.purge(delivered, dead).await.unwrap(), 0);
        assert_eq!(fx.mail.counts().await.unwrap().delivered_recipients, 3);
        // Past it: the delivered row goes, the queued one stays, and a second purge finds nothing.
        assert!(fx.mail.purge(now + 1_000, now + 1_000).await.unwrap() >= 1);
        let after = fx.mail.counts().await.unwrap();
        assert_eq!((after.delivered_recipients, after.queued_recipients), (0, 3), "{after:?}");
        assert_eq!(fx.mail.purge(now + 1_000, now + 1_000).await.unwrap(), 0);
        // The queued message is still whole: a worker delivers it.
        let sink = fx.dir.path().join("mail-later");
        assert_eq!(fx.drain(Relay::Maildir(sink.clone())).await, 1);
        assert_eq!(std::fs::read_dir(&sink).unwrap().count(), 3);
        fx.finish().await;
    }
}

/// INV-5 for the mail tables: after a message is queued for a group, owners are stored and a
/// bounce is counted, the raw SQLite files (database and write-ahead log, every page, not only
/// live rows) hold no member address, no owner subject and no message text in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 with aiosmtpd and dkimpy"]
async fn inv5_the_mail_tables_hold_no_member_address_owner_or_message_text_in_clear() {
    service_kit::testing::require_mail_tools();
    let fx = Fixture::new(TestDatabase::sqlite(), SenderPolicy::Owners).await;
    fx.mail
        .set_policy(
            &Context::tenant(),
            fx.group,
            SenderPolicy::Anyone,
            false,
            &[Subject::parse("owner-secret-7").unwrap()],
        )
        .await
        .unwrap();
    // Members known by address only, so the identity rows hold nothing readable either.
    fx.seed(50).await;
    let svc = fx.start(None).await;
    let text =
        message("Quarterly secret plan", 1).replace("Hello everyone.", "Quarterly secret plan");
    let r = send(svc.addr, "alice@corp.example", &[&fx.address], &text, &[]).await;
    assert_eq!(r["ok"], true, "{r}");
    fx.mail
        .consume(
            Inbound::Bounce,
            None,
            &[format!("m000001@{MEMBER_DOMAIN}")],
            1,
        )
        .await
        .unwrap();
    assert_eq!(fx.mail.counts().await.unwrap().queued_recipients, 50);
    drop(svc);
    let path = fx
        .database
        .url()
        .strip_prefix("sqlite://")
        .unwrap()
        .to_string();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        !contains(MEMBER_DOMAIN),
        "a member address is in the database in clear"
    );
    assert!(
        !contains("Quarterly secret plan"),
        "the message text is in clear"
    );
    assert!(!contains("owner-secret-7"), "an owner is in clear");
    // The check can see: the group's own address is stored in clear, by design.
    assert!(contains("erg@groups.test.example"));
    fx.finish().await;
}

/// Says each line of `conversation` on a new connection to `addr` and answers everything the
/// listener said, greeting included, byte for byte.
async fn transcript(addr: std::net::SocketAddr, conversation: &[String]) -> String {
    let (mut raw, greeting) = Raw::open(addr).await;
    let mut all = greeting;
    for line in conversation {
        all.push_str(&raw.say(line).await);
    }
    all
}

/// A raw SMTP conversation, for the limits smtplib would not cross on its own.
struct Raw {
    r: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn open(addr: std::net::SocketAddr) -> (Self, String) {
        let (r, w) = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap()
            .into_split();
        let mut raw = Self {
            r: tokio::io::BufReader::new(r),
            w,
        };
        let greeting = raw.reply().await;
        (raw, greeting)
    }

    /// The next reply, all its lines; empty when the server closed the connection.
    async fn reply(&mut self) -> String {
        use tokio::io::AsyncBufReadExt as _;
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut line))
                .await
                .expect("a reply in time")
                .unwrap();
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn say(&mut self, line: &str) -> String {
        use tokio::io::AsyncWriteExt as _;
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_recipient_message_and_idle_limits_are_enforced() {
    let fx = Fixture::new(TestDatabase::sqlite(), SenderPolicy::Anyone).await;
    fx.seed(1).await;
    let args = MailArgs {
        max_connections: 1,
        max_recipients: 2,
        max_messages_per_connection: 1,
        command_timeout_secs: 1,
        idle_timeout_secs: 1,
        ..fx.args(None)
    };
    let listener = tokio::net::TcpListener::bind(args.listen.unwrap())
        .await
        .unwrap();
    let svc = start_on(
        MailContext::new(&args, fx.mail.clone(), "corp.example".parse().unwrap()),
        listener,
    );

    let (mut first, greeting) = Raw::open(svc.addr).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    // One connection at a time: the second is told 421 and closed.
    let (mut second, refused) = Raw::open(svc.addr).await;
    assert!(refused.starts_with("421 4.3.2"), "{refused}");
    assert_eq!(second.reply().await, "");

    let ehlo = first.say("EHLO me.corp.example").await;
    for ext in ["8BITMIME", "SMTPUTF8", "SIZE 65536", "PIPELINING"] {
        assert!(ehlo.contains(ext), "{ehlo}");
    }
    assert!(first
        .say("VRFY m000000@members.test.example")
        .await
        .starts_with("252 "));
    assert!(first
        .say("EXPN erg@groups.test.example")
        .await
        .starts_with("502 "));
    assert!(first
        .say("MAIL FROM:<alice@corp.example> BODY=8BITMIME SMTPUTF8 RET=HDRS")
        .await
        .starts_with("250 "));
    let rcpt = format!(
        "RCPT TO:<{}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y.example",
        fx.address
    );
    assert!(first.say(&rcpt).await.starts_with("250 "));
    assert!(first
        .say(&format!("RCPT TO:<{}>", fx.address))
        .await
        .starts_with("250 "));
    // Two recipients per message at most.
    assert!(first
        .say(&format!("RCPT TO:<{}>", fx.address))
        .await
        .starts_with("452 4.5.3"));
    assert!(first.say("DATA").await.starts_with("354 "));
    assert!(first
        .say("Subject: one\r\n\r\nbody\r\n.")
        .await
        .starts_with("250 "));
    // One message per connection: the next MAIL closes it.
    assert!(first
        .say("MAIL FROM:<alice@corp.example>")
        .await
        .starts_with("421 "));
    assert_eq!(first.reply().await, "");

    // A silent client is let go after the command timeout.
    let (mut idle, _) = Raw::open(svc.addr).await;
    let start = Instant::now();
    let bye = idle.reply().await;
    assert!(bye.starts_with("421 4.4.2"), "{bye}");
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(svc);
    fx.finish().await;
}

/// Item 6 of issue 16: 64 idle connections used to block inbound mail for the 300 s command
/// timeout. Now one address holds at most its share of the slots, an idle connection is let go
/// after the short idle timeout, and a slot freed is a slot served; within a message, the longer
/// command timeout applies. Bounded: the whole test takes a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greedy_or_idle_peer_holds_few_slots_and_only_briefly() {
    let fx = Fixture::new(TestDatabase::sqlite(), SenderPolicy::Anyone).await;
    fx.seed(1).await;
    let args = MailArgs {
        max_connections: 16,
        max_connections_per_peer: 2,
        idle_timeout_secs: 1,
        command_timeout_secs: 5,
        ..fx.args(None)
    };
    let listener = tokio::net::TcpListener::bind(args.listen.unwrap())
        .await
        .unwrap();
    let svc = start_on(
        MailContext::new(&args, fx.mail.clone(), "corp.example".parse().unwrap()),
        listener,
    );
    let started = Instant::now();

    // Two connections from this address are served; the third is refused at once.
    let (mut a, greeting) = Raw::open(svc.addr).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    let (mut b, greeting) = Raw::open(svc.addr).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    let (mut c, refused) = Raw::open(svc.addr).await;
    assert!(refused.starts_with("421 4.7.0"), "{refused}");
    assert_eq!(c.reply().await, "", "and closed");

    // `b` starts a message: within it the command timeout (5 s) applies, not the idle one.
    assert!(b.say("EHLO me.corp.example").await.starts_with("250"));
    assert!(b
        .say("MAIL FROM:<alice@corp.example>")
        .await
        .starts_with("250 "));
    // `a` says nothing: let go after the idle timeout.
    let bye = a.reply().await;
    assert!(bye.starts_with("421 4.4.2"), "{bye}");
    assert_eq!(a.reply().await, "");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "idle for about 1 s, not 300"
    );
    // `b`, silent as long as `a` was, is still in its message.
    let rcpt = b.say(&format!("RCPT TO:<{}>", fx.address)).await;
    assert!(rcpt.starts_with("250 "), "{rcpt}");

    // `a`'s slot is free again: a new connection from this address is served (the slot is
    // freed when the session ends, just after the 421, so allow a moment for it).
    let mut served = None;
    for _ in 0..50 {
        let (conn, greeting) = Raw::open(svc.addr).await;
        if greeting.starts_with("220 ") {
            served = Some(conn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut d = served.expect("a freed slot is served again");
    assert!(d.say("NOOP").await.starts_with("250"));
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(svc);
    fx.finish().await;
}

#[test]
fn trusted_relays_are_addresses_or_networks_and_nobody_by_default() {
    let args = MailArgs {
        trusted_relays: ["10.0.0.25", "10.1.0.0/24", "::1"]
            .map(|s| parse_relay(s).unwrap())
            .to_vec(),
        ..MailArgs::default()
    };
    let trusted = |ip: &str| args.is_trusted_relay(ip.parse().unwrap());
    assert!(trusted("10.0.0.25"));
    assert!(!trusted("10.0.0.26"));
    assert!(trusted("10.1.0.200"));
    assert!(
        trusted("::ffff:10.1.0.7"),
        "an IPv4-mapped peer is its IPv4 address"
    );
    assert!(trusted("::1"));
    assert!(parse_relay("mta.corp.example").is_err());
    assert!(parse_relay("10.0.0.0/33").is_err());
    assert!(!MailArgs::default().is_trusted_relay("127.0.0.1".parse().unwrap()));
}

/// Queues a message for the fixture's group (`expected` recipients) and answers the bounce
/// token of its one delivery, as a recipient of that copy would see it.
async fn token_of_a_copy(fx: &Fixture, expected: usize) -> String {
    let accepted = fx
        .mail
        .accept(fx.group, b"\0Subject: x\r\n\r\nx\r\n", 100)
        .await
        .unwrap();
    assert_eq!(accepted.recipients, expected);
    let claimed = fx
        .mail
        .claim(uuid::Uuid::new_v4(), 10, Duration::from_secs(60))
        .await
        .unwrap();
    let mine: Vec<_> = claimed
        .into_iter()
        .filter(|c| c.message_id == accepted.message_id)
        .collect();
    assert_eq!(mine.len(), 1, "one delivery for the members' domain");
    mine[0].bounce_token.clone()
}

/// Issue 16, forged bounces: any recipient of a copy sees its bounce address, and used to be
/// able to silence anyone by sending DSNs there naming them. Now a DSN counts a hard bounce only
/// for an address the delivery behind that bounce address really went to, once per delivery,
/// and at most one a day per address.
async fn a_forged_bounce_counts_only_for_an_address_its_delivery_went_to(database: TestDatabase) {
    let fx = Fixture::new(database, SenderPolicy::Anyone).await;
    let members = fx.seed(4).await;
    let dsn = |mail: Arc<dyn MailStore>, token: String, named: &'static str, limit: u32| async move {
        mail.consume(Inbound::Bounce, Some(&token), &[named.to_string()], limit)
            .await
            .unwrap();
        mail.counts().await.unwrap().bad_addresses
    };
    let first = token_of_a_copy(&fx, members.len()).await;
    // Naming someone the delivery did not go to counts nothing, even with a limit of one.
    assert_eq!(
        dsn(fx.mail.clone(), first.clone(), "bob@corp.example", 1).await,
        0
    );
    // A token the tenant never issued counts nothing.
    assert_eq!(
        dsn(
            fx.mail.clone(),
            "0".repeat(32),
            "m000001@members.test.example",
            1
        )
        .await,
        0
    );
    // A recipient of that delivery counts (limit one: marked bad at once).
    assert_eq!(
        dsn(
            fx.mail.clone(),
            first.clone(),
            "m000001@members.test.example",
            1
        )
        .await,
        1
    );
    // Limit two: the same DSN again counts nothing (its tag is gone), and another delivery's
    // DSN for the same address the same day counts nothing either.
    assert_eq!(
        dsn(
            fx.mail.clone(),
            first.clone(),
            "m000002@members.test.example",
            2
        )
        .await,
        1
    );
    assert_eq!(
        dsn(
            fx.mail.clone(),
            first.clone(),
            "m000002@members.test.example",
            2
        )
        .await,
        1
    );
    // (m000001 is bad now: the next copy skips it.)
    let second = token_of_a_copy(&fx, members.len() - 1).await;
    assert_ne!(first, second);
    assert_eq!(
        dsn(fx.mail.clone(), second, "m000002@members.test.example", 2).await,
        1,
        "one counted bounce a day: m000002 is not bad"
    );
    assert_eq!(fx.mail.counts().await.unwrap().bounces_consumed, 6);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_bounce_counts_only_for_an_address_its_delivery_went_to_on_sqlite() {
    a_forged_bounce_counts_only_for_an_address_its_delivery_went_to(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs HUSH_TEST_POSTGRES_URL"]
async fn a_forged_bounce_counts_only_for_an_address_its_delivery_went_to_on_postgres() {
    a_forged_bounce_counts_only_for_an_address_its_delivery_went_to(TestDatabase::postgres().await)
        .await;
}

/// A `p=reject` record longer than a 512-byte UDP answer: the resolver gets it over TCP.
fn long_reject_record() -> String {
    let rua: Vec<String> = (0..20)
        .map(|i| format!("mailto:dmarc-reports-{i}@big.example"))
        .collect();
    format!("v=DMARC1; p=reject; rua={}", rua.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 with aiosmtpd and dkimpy"]
async fn from_is_rewritten_by_the_dmarc_policy_dns_gives_and_when_dns_fails() {
    use super::testdns::{Answer, TestDns};
    service_kit::testing::require_mail_tools();
    let fx = Fixture::new(TestDatabase::sqlite(), SenderPolicy::Anyone).await;
    fx.seed(1).await;
    let txt = |r: &str| Answer::Txt(vec![r.to_string()]);
    let dns = TestDns::start(
        [
            ("_dmarc.strict.example", txt("v=DMARC1; p=reject")),
            // Subdomains take the organizational domain's sp=.
            (
                "_dmarc.orgpolicy.example",
                txt("v=DMARC1; p=none; sp=quarantine"),
            ),
            ("_dmarc.relaxed.example", txt("v=DMARC1; p=none")),
            ("_dmarc.broken.example", Answer::ServFail),
            ("_dmarc.silent.example", Answer::Silent),
            (
                "_dmarc.big.example",
                Answer::Txt(vec![long_reject_record()]),
            ),
            // Internal: aligned, so never rewritten, whatever its policy says.
            ("_dmarc.corp.example", txt("v=DMARC1; p=reject")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    )
    .await;
    let relay = PyRelay::start(fx.dir.path());
    let args = MailArgs {
        from_rewrite: dmarc::FromRewrite::Dmarc,
        aligned_domains: vec!["corp.example".into()],
        dns_server: Some(dns.addr),
        dns_timeout_secs: 1,
        ..fx.args(Some(smtp(relay.addr())))
    };
    let listener = tokio::net::TcpListener::bind(args.listen.unwrap())
        .await
        .unwrap();
    let senders = [
        ("alice@strict.example", true),
        ("alice@mail.orgpolicy.example", true),
        ("alice@relaxed.example", false),
        ("alice@nodmarc.example", false),
        ("alice@broken.example", true),
        ("alice@silent.example", true),
        ("alice@big.example", true),
        ("alice@eu.corp.example", false),
    ];
    let corporate = senders
        .iter()
        .map(|(a, _)| a.split_once('@').unwrap().1)
        .collect::<Vec<_>>()
        .join(",");
    let svc = start_on(
        MailContext::new(&args, fx.mail.clone(), corporate.parse().unwrap()),
        listener,
    );
    for (from, _) in senders {
        let text = message(from, 1).replace("alice@corp.example>", &format!("{from}>"));
        let r = send(svc.addr, from, &[&fx.address], &text, &[]).await;
        assert_eq!(r["ok"], true, "{r}");
    }
    let received = relay.wait_for(senders.len(), Duration::from_secs(60)).await;
    for (from, rewritten) in senders {
        let head = received
            .iter()
            .map(|m| {
                m["data"]
                    .as_str()
                    .unwrap()
                    .split("\r\n\r\n")
                    .next()
                    .unwrap()
            })
            .find(|h| h.contains(&format!("Subject: {from}\r\n")))
            .unwrap_or_else(|| panic!("no copy of {from}'s message"));
        if rewritten {
            assert!(
                head.contains(
                    "From: \"Alice via Employee Resource Group\" <erg@groups.test.example>"
                ),
                "{from}: {head}"
            );
            assert!(
                head.contains(&format!("Reply-To: Alice <{from}>")),
                "{from}: {head}"
            );
        } else {
            assert!(
                head.contains(&format!("From: Alice <{from}>")),
                "{from}: {head}"
            );
            assert!(!head.contains("Reply-To"), "{from}: {head}");
        }
    }
    assert!(
        dns.tcp_queries() > 0,
        "the truncated answer was asked again over TCP"
    );
    drop(svc);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 with aiosmtpd and dkimpy"]
async fn starttls_with_the_configured_certificate_carries_the_message() {
    service_kit::testing::require_mail_tools();
    let fx = Fixture::new(TestDatabase::sqlite(), SenderPolicy::Anyone).await;
    fx.seed(2).await;
    let (cert, key) = (
        fx.dir.path().join("cert.pem"),
        fx.dir.path().join("key.pem"),
    );
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl makes the test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let args = MailArgs {
        tls_cert_file: Some(cert),
        tls_key_file: Some(key),
        ..fx.args(None)
    };
    let listener = tokio::net::TcpListener::bind(args.listen.unwrap())
        .await
        .unwrap();
    let svc = start_on(
        MailContext::new(&args, fx.mail.clone(), "corp.example".parse().unwrap())
            .with_tls(args.load_tls().unwrap()),
        listener,
    );
    let r = send(
        svc.addr,
        "alice@corp.example",
        &[&fx.address],
        &message("tls", 1),
        &["--starttls"],
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["tls"].as_str().unwrap().starts_with("TLSv1."), "{r}");
    assert_eq!(r["offers_starttls_again"], false, "{r}");
    assert_eq!(fx.mail.counts().await.unwrap().queued_recipients, 2);
    drop(svc);
    fx.finish().await;
}

/// The tags of the first header `name` in `head` (unfolded).
fn tags(head: &str, name: &str) -> std::collections::HashMap<String, String> {
    let unfolded = head.replace("\r\n\t", " ").replace("\r\n ", " ");
    let line = unfolded
        .split("\r\n")
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .unwrap_or_else(|| panic!("no {name} in {head}"));
    line.split_once(':')
        .unwrap()
        .1
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.split_whitespace().collect::<String>(),
            )
        })
        .collect()
}

/// Sends `text` through a tenant that signs and seals with a fresh group key, asking `dns` for
/// the keys of the chain the message arrives with; the copy the relay got, and the group key's
/// DNS record.
async fn sealed_copy(fx: &Fixture, dns: &super::testdns::TestDns, text: &str) -> (String, String) {
    let signer = group_signer(
        fx.dir.path(),
        &format!("arc{}", uuid::Uuid::new_v4().simple()),
    );
    let record = signer.dns_record().to_string();
    // A relay of its own, recording into a file of its own.
    let out = fx.dir.path().join(uuid::Uuid::new_v4().to_string());
    std::fs::create_dir(&out).unwrap();
    let relay = PyRelay::start(&out);
    let args = MailArgs {
        arc: true,
        dns_server: Some(dns.addr),
        dns_timeout_secs: 2,
        ..fx.args(Some(smtp(relay.addr())))
    };
    let listener = tokio::net::TcpListener::bind(args.listen.unwrap())
        .await
        .unwrap();
    let svc = start_on(
        MailContext::new(&args, fx.mail.clone(), "corp.example".parse().unwrap())
            .with_dkim(Some(signer)),
        listener,
    );
    let r = send(svc.addr, "alice@corp.example", &[&fx.address], text, &[]).await;
    assert_eq!(r["ok"], true, "{r}");
    let received = relay.wait_for(1, Duration::from_secs(30)).await;
    drop(svc);
    (received[0]["data"].as_str().unwrap().to_string(), record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 with aiosmtpd and dkimpy"]
async fn arc_seals_the_next_instance_over_the_chain_the_message_arrived_with() {
    use super::testdns::{Answer, TestDns};
    service_kit::testing::require_mail_tools();
    let fx = Fixture::new(TestDatabase::sqlite(), SenderPolicy::Anyone).await;
    fx.seed(1).await;
    // The corporate MTA (as Microsoft 365 or Google would) signs and seals instance 1 with
    // its own key, published in the test's DNS.
    let corp_key = rsa_key_file(fx.dir.path(), "corp.pem", true);
    let corp_record = {
        let out = Command::new("openssl")
            .args(["rsa", "-pubout", "-outform", "DER", "-in"])
            .arg(&corp_key)
            .output()
            .unwrap();
        use base64::Engine as _;
        format!(
            "v=DKIM1; k=rsa; p={}",
            base64::engine::general_purpose::STANDARD.encode(out.stdout)
        )
    };
    let dns = TestDns::start(
        [(
            "mx2026._domainkey.corp.example".to_string(),
            Answer::Txt(vec![corp_record.clone()]),
        )]
        .into_iter()
        .collect(),
    )
    .await;
    let inbound = format!(
        "Authentication-Results: mx.corp.example; dkim=pass header.d=corp.example; spf=pass smtp.mailfrom=corp.example\r\n{}",
        message("arc", 10)
    );
    let (src, dst) = (
        fx.dir.path().join("in.eml"),
        fx.dir.path().join("sealed.eml"),
    );
    std::fs::write(&src, &inbound).unwrap();
    let made = Command::new("python3")
        .arg(format!("{SCRIPTS}/arc_sign.py"))
        .arg(&src)
        .arg(&dst)
        .arg(&corp_key)
        .args(["corp.example", "mx2026", "mx.corp.example"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let sealed = String::from_utf8(std::fs::read(&dst).unwrap()).unwrap();
    let corp = [
        "--key",
        "mx2026._domainkey.corp.example",
        corp_record.as_str(),
    ];
    // The chain as it arrives verifies in dkimpy itself.
    let (ok, said) = dkimpy(fx.dir.path(), &sealed, &corp_record, &["--arc"]);
    assert!(ok, "the test's own ARC set: {said}");

    // Arrives with a valid chain: instance 2, cv=pass, and dkimpy verifies the whole chain.
    let (data, record) = sealed_copy(&fx, &dns, &sealed).await;
    let head = data.split("\r\n\r\n").next().unwrap().to_string();
    let seal = tags(&head, "ARC-Seal");
    assert_eq!(
        (seal["i"].as_str(), seal["cv"].as_str()),
        ("2", "pass"),
        "{head}"
    );
    let ams = tags(&head, "ARC-Message-Signature");
    assert_eq!(ams["i"], "2");
    assert!(
        ams["h"]
            .to_ascii_lowercase()
            .split(':')
            .any(|h| h == "dkim-signature"),
        "the AMS covers the DKIM signature: {head}"
    );
    let aar = tags(&head, "ARC-Authentication-Results");
    assert_eq!(aar["i"], "2", "{head}");
    assert!(head.contains("arc=pass"), "{head}");
    let mut extra = vec!["--arc"];
    extra.extend_from_slice(&corp);
    let (ok, said) = dkimpy(fx.dir.path(), &data, &record, &extra);
    assert!(ok, "dkimpy does not verify the two-instance chain: {said}");
    assert!(said.contains(" 2"), "two instances: {said}");
    assert!(
        dkimpy(fx.dir.path(), &data, &record, &corp).0,
        "our DKIM signature verifies"
    );
    assert!(
        !dkimpy(
            fx.dir.path(),
            &data.replace("Hello everyone.", "Hello, everyone."),
            &record,
            &extra
        )
        .0
    );

    // Arrives with a chain that no longer verifies (the body changed after the seal):
    // instance 2 says cv=fail, and dkimpy agrees the chain failed.
    let tampered = sealed.replace("Hello everyone.", "Hello, everyone.");
    let (data, record) = sealed_copy(&fx, &dns, &tampered).await;
    let head = data.split("\r\n\r\n").next().unwrap().to_string();
    let seal = tags(&head, "ARC-Seal");
    assert_eq!(
        (seal["i"].as_str(), seal["cv"].as_str()),
        ("2", "fail"),
        "{head}"
    );
    let (ok, said) = dkimpy(fx.dir.path(), &data, &record, &extra);
    assert!(!ok && said.trim_end().ends_with("fail"), "{said}");

    // Arrives with no chain: instance 1, cv=none, which dkimpy verifies.
    let (data, record) = sealed_copy(&fx, &dns, &inbound).await;
    let head = data.split("\r\n\r\n").next().unwrap().to_string();
    let seal = tags(&head, "ARC-Seal");
    assert_eq!(
        (seal["i"].as_str(), seal["cv"].as_str()),
        ("1", "none"),
        "{head}"
    );
    assert!(head.contains("arc=none"), "{head}");
    let (ok, said) = dkimpy(fx.dir.path(), &data, &record, &["--arc"]);
    assert!(ok, "dkimpy does not verify instance 1: {said}");
    assert!(
        dkimpy(fx.dir.path(), &data, &record, &[]).0,
        "the DKIM signature verifies beside ARC"
    );
    fx.finish().await;
}

/// The relay over TLS (issue 20): a real aiosmtpd relay on loopback offering STARTTLS (and
/// requiring it), or TLS from the first byte, with a certificate from a CA made by `openssl`
/// for the test; the tenant's workers drain the queue against it.
mod relay_tls {
    use super::*;
    use crate::mail::relay::{RelayArgs, RelayStats, TlsMode};
    use std::path::Path;
    use std::sync::Mutex;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// A test CA and a relay certificate it signed for `localhost`.
    type Certs = service_kit::testing::TestCerts;

    fn make_certs(dir: &Path, name: &str) -> Certs {
        service_kit::testing::test_certs(dir, name, "DNS:localhost")
    }

    /// The relay by name (`localhost`, as its certificate says), never by address.
    fn by_name(relay: &PyRelay) -> Relay {
        Relay::Smtp(
            format!("localhost:{}", relay.addr().port())
                .parse()
                .unwrap(),
        )
    }

    fn tls_options<'a>(flag: &'a str, certs: &'a Certs) -> Vec<&'a str> {
        vec![
            flag,
            certs.cert.to_str().unwrap(),
            certs.key.to_str().unwrap(),
        ]
    }

    /// A worker context over the fixture's database securing the relay as `outbound` says;
    /// retries are due at once, so a drain runs every attempt without waiting.
    async fn context(
        fx: &Fixture,
        outbound: &RelayArgs,
        max_attempts: u32,
        stats: &Arc<RelayStats>,
    ) -> MailContext {
        context_with(fx, outbound, max_attempts, 0, stats).await
    }

    /// [`context`], retrying after `retry_base_secs`.
    async fn context_with(
        fx: &Fixture,
        outbound: &RelayArgs,
        max_attempts: u32,
        retry_base_secs: u64,
        stats: &Arc<RelayStats>,
    ) -> MailContext {
        let args = MailArgs {
            outbound: outbound.clone(),
            max_attempts,
            retry_base_secs,
            ..fx.args(None)
        };
        let mail = store::connect(fx.database.url(), fx.keys.clone())
            .await
            .unwrap();
        MailContext::new(&args, mail, "corp.example".parse().unwrap())
            .with_relay_security(outbound.load().unwrap())
            .with_relay_stats(stats.clone())
    }

    /// Queues one message to the group (no workers run).
    async fn queue_one(fx: &Fixture) {
        let svc = fx.start(None).await;
        let r = send(
            svc.addr,
            "alice@corp.example",
            &[&fx.address],
            &message("tls", 1),
            &[],
        )
        .await;
        assert_eq!(r["ok"], true, "{r}");
        drop(svc);
    }

    fn ca_only(certs: &Certs, tls: TlsMode) -> RelayArgs {
        RelayArgs {
            tls,
            ca_file: Some(certs.ca.clone()),
            auth_file: None,
        }
    }

    /// The messages of the relay-state log lines, captured on this thread.
    #[derive(Clone, Default)]
    struct StateLog(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StateLog {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    if f.name() == "message" {
                        self.0 = format!("{v:?}");
                    }
                }
            }
            let mut m = Message(String::new());
            event.record(&mut m);
            if m.0.contains("mail relay") {
                self.0.lock().unwrap().push(m.0);
            }
        }
    }

    on_both_backends! {
        async fn starttls_and_auth_to_a_relay_by_name_carry_every_copy_encrypted(db) {
            let fx = Fixture::new(db, SenderPolicy::Anyone).await;
            let members = fx.seed(3).await;
            let certs = make_certs(fx.dir.path(), "good");
            let mut options = tls_options("--starttls", &certs);
            options.extend(["--auth", "hush-relay:s3cret pass"]);
            let relay = PyRelay::start_with(&fx.dir.path().join("relay.jsonl"), None, &options);
            let auth = fx.dir.path().join("relay-auth");
            std::fs::write(&auth, "hush-relay\ns3cret pass\n").unwrap();
            let outbound = RelayArgs { auth_file: Some(auth), ..ca_only(&certs, TlsMode::Starttls) };
            let stats = Arc::new(RelayStats::default());
            queue_one(&fx).await;

            let ctx = context(&fx, &outbound, 8, &stats).await;
            assert_eq!(delivery::drain_until_idle(ctx, by_name(&relay)).await.unwrap(), 1);

            let mut got = relay.recipients();
            got.sort();
            assert_eq!(got, members);
            for m in relay.received() {
                assert_eq!((m["tls"].as_bool(), m["auth"].as_str()), (Some(true), Some("hush-relay")), "{m}");
            }
            let s = stats.counters();
            assert_eq!((s.attempts, s.delivered, stats.status().failing), (1, 1, None));
            assert_eq!(fx.mail.counts().await.unwrap().delivered_recipients, 3);
            fx.finish().await;
        }

        async fn implicit_tls_delivers_from_the_first_byte(db) {
            let fx = Fixture::new(db, SenderPolicy::Anyone).await;
            fx.seed(2).await;
            let certs = make_certs(fx.dir.path(), "implicit");
            let relay = PyRelay::start_with(&fx.dir.path().join("relay.jsonl"), None, &tls_options("--implicit", &certs));
            queue_one(&fx).await;
            let stats = Arc::new(RelayStats::default());
            let ctx = context(&fx, &ca_only(&certs, TlsMode::Implicit), 8, &stats).await;
            assert_eq!(delivery::drain_until_idle(ctx, by_name(&relay)).await.unwrap(), 1);
            assert_eq!(relay.recipients().len(), 2);
            assert!(relay.received().iter().all(|m| m["tls"] == true));
            fx.finish().await;
        }

        async fn no_starttls_a_wrong_ca_or_wrong_credentials_send_nothing_and_the_delivery_waits(db) {
            let fx = Fixture::new(db, SenderPolicy::Anyone).await;
            fx.seed(2).await;
            let good = make_certs(fx.dir.path(), "good");
            let other = make_certs(fx.dir.path(), "other");
            let auth = fx.dir.path().join("relay-auth");
            std::fs::write(&auth, "hush-relay\nwrong\n").unwrap();
            let plain = PyRelay::start_with(&fx.dir.path().join("plain.jsonl"), None, &[]);
            let tls = PyRelay::start_with(&fx.dir.path().join("tls.jsonl"), None, &tls_options("--starttls", &good));
            let mut options = tls_options("--starttls", &good);
            options.extend(["--auth", "hush-relay:right"]);
            let authed = PyRelay::start_with(&fx.dir.path().join("authed.jsonl"), None, &options);
            let cases = [
                (&plain, ca_only(&good, TlsMode::Starttls), "starttls-missing"),
                (&tls, ca_only(&other, TlsMode::Starttls), "tls"),
                (&authed, RelayArgs { auth_file: Some(auth.clone()), ..ca_only(&good, TlsMode::Starttls) }, "auth"),
            ];
            for (i, (relay, outbound, cause)) in cases.into_iter().enumerate() {
                queue_one(&fx).await;
                let stats = Arc::new(RelayStats::default());
                // One attempt per drain: the retry is due an hour later.
                let ctx = context_with(&fx, &outbound, 8, 3600, &stats).await;
                assert_eq!(delivery::drain_until_idle(ctx, by_name(relay)).await.unwrap(), 1, "{cause}");
                assert!(relay.received().is_empty(), "{cause}: something was sent");
                let s = stats.counters();
                assert_eq!((stats.status().failing.as_deref(), s.deferred, s.dead), (Some(cause), 1, 0));
                let counts = fx.mail.counts().await.unwrap();
                assert_eq!((counts.queued_recipients, counts.dead_deliveries), (2 * (i as i64 + 1), 0), "{cause}: waits for a retry");
            }
            fx.finish().await;
        }

        async fn a_530_is_retried_then_dead_letters_are_listed_without_group_or_address_and_purged(db) {
            let fx = Fixture::new(db, SenderPolicy::Anyone).await;
            fx.seed(3).await;
            let certs = make_certs(fx.dir.path(), "good");
            // The issue's relay: it answers MAIL with "530 Must issue a STARTTLS command
            // first"; the tenant is (mis)configured for plaintext.
            let relay = PyRelay::start_with(&fx.dir.path().join("relay.jsonl"), None, &tls_options("--starttls", &certs));
            let stats = Arc::new(RelayStats::default());
            queue_one(&fx).await;
            let log = StateLog::default();
            let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(log.clone()));

            let ctx = context(&fx, &RelayArgs::plaintext(), 3, &stats).await;
            assert_eq!(delivery::drain_until_idle(ctx, by_name(&relay)).await.unwrap(), 3, "retried until the attempts were spent");
            assert!(relay.received().is_empty());
            let s = stats.counters();
            let auth_required = stats.failures(crate::mail::relay::Cause::AuthRequired);
            assert_eq!((s.attempts, s.deferred, s.dead, auth_required), (3, 2, 1, 3));
            assert_eq!(stats.status().failing.as_deref(), Some("auth-required"));

            // Fixed: the same relay over STARTTLS, a new message goes through.
            queue_one(&fx).await;
            let ctx = context(&fx, &ca_only(&certs, TlsMode::Starttls), 3, &stats).await;
            assert_eq!(delivery::drain_until_idle(ctx, by_name(&relay)).await.unwrap(), 1);
            assert_eq!(relay.recipients().len(), 3);
            assert_eq!(stats.status().failing, None);
            drop(guard);
            let lines = log.0.lock().unwrap().clone();
            assert_eq!(lines.len(), 2, "one line per relay state change, not per attempt: {lines:?}");
            assert!(lines[0].contains("failing") && lines[1].contains("works again"), "{lines:?}");

            let dead = fx.mail.dead_letters(200).await.unwrap();
            assert_eq!(dead.len(), 1);
            assert_eq!((dead[0].attempts, dead[0].last_reply.as_deref()), (3, Some("530")));
            let shown = serde_json::to_string(&dead).unwrap();
            for secret in [fx.group.to_string(), fx.address.clone(), MEMBER_DOMAIN.to_string()] {
                assert!(!shown.contains(&secret), "{shown}");
            }
            assert!(!shown.contains("recipients"), "no count of any kind, not even a bucket: {shown}");
            // What operators get names messages, never recipients or transactions.
            let c = fx.mail.counts().await.unwrap();
            let ops = serde_json::to_value(c.for_operators(stats.status())).unwrap();
            assert_eq!((ops["dead_messages"].as_i64(), ops["delivered_messages"].as_i64()), (Some(1), Some(1)), "{ops}");
            let ops = ops.to_string();
            assert!(!ops.contains("recipients") && !ops.contains("deliveries") && !ops.contains("attempts"), "{ops}");

            // Dead letters stay for their retention, then go; delivered rows likewise.
            let now = service_kit::db::now_ms();
            let (delivered, dead_cut) = delivery::purge_cutoffs(&MailArgs::default(), now);
            assert_eq!(fx.mail.purge(delivered, dead_cut).await.unwrap(), 0);
            let short = MailArgs { delivered_retention_days: 0, dead_retention_days: 0, ..MailArgs::default() };
            let (delivered, dead_cut) = delivery::purge_cutoffs(&short, now + 1);
            assert_eq!(fx.mail.purge(delivered, dead_cut).await.unwrap(), 2);
            assert!(fx.mail.dead_letters(200).await.unwrap().is_empty());
            let c = fx.mail.counts().await.unwrap();
            assert_eq!((c.dead_deliveries, c.delivered_deliveries), (0, 0));
            fx.finish().await;
        }
    }
}

/// Readiness of the mail side ([`super::watch`]): the listener must greet, a stopped one makes
/// the tenant unready; the queue's age and the relay's failures are reported with a reason.
async fn readiness_sees_the_listener_the_queue_age_and_the_relay(database: TestDatabase) {
    let fx = Fixture::new(database, SenderPolicy::Anyone).await;
    fx.seed(3).await;
    let svc = fx.start(None).await;
    let (_, listening) = super::watch::listener_check(svc.addr);
    assert_eq!(listening().await, Ok(()));

    // Nothing queued: no age, nothing to report even with a 1 ms threshold.
    assert_eq!(fx.mail.oldest_queued_ms().await.unwrap(), None);
    let (_, young) = super::watch::queue_age_check(fx.mail.clone(), Duration::from_millis(1));
    assert_eq!(young().await, Ok(()));
    let before = service_kit::db::now_ms();
    fx.mail
        .accept(fx.group, b"Subject: x\r\n\r\nx\r\n", 100)
        .await
        .unwrap();
    let queued_at = fx
        .mail
        .oldest_queued_ms()
        .await
        .unwrap()
        .expect("a queued delivery");
    assert!(queued_at >= before && queued_at <= service_kit::db::now_ms());
    // Waits for the queued delivery to be older than the threshold (no relay: it stays).
    let (_, old) = super::watch::queue_age_check(fx.mail.clone(), Duration::from_millis(1));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let reason = loop {
        match old().await {
            Err(reason) => break reason,
            Ok(()) => {
                assert!(std::time::Instant::now() < deadline, "never reported");
                tokio::task::yield_now().await;
            }
        }
    };
    assert!(reason.contains("oldest queued delivery"), "{reason}");
    let (_, off) = super::watch::queue_age_check(fx.mail.clone(), Duration::ZERO);
    assert_eq!(off().await, Ok(()), "a zero threshold never reports");

    // The relay: reported while it fails relay-wide, with the cause, not before.
    let stats = Arc::new(relay::RelayStats::default());
    let (_, relay_ok) = super::watch::relay_check(stats.clone());
    assert_eq!(relay_ok().await, Ok(()));
    let host: relay::RelayHost = "relay.corp.example:25".parse().unwrap();
    stats.relay_failing(&host, relay::Cause::StarttlsMissing, "no STARTTLS");
    let reason = relay_ok().await.unwrap_err();
    assert!(reason.contains("starttls-missing"), "{reason}");
    stats.relay_ok(&host);
    assert_eq!(relay_ok().await, Ok(()));

    // A listener that stopped: not ready.
    let addr = svc.addr;
    drop(svc);
    let (_, stopped) = super::watch::listener_check(addr);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stopped().await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "a stopped listener still greets"
        );
        tokio::task::yield_now().await;
    }
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_sees_the_listener_the_queue_age_and_the_relay_on_sqlite() {
    readiness_sees_the_listener_the_queue_age_and_the_relay(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs HUSH_TEST_POSTGRES_URL"]
async fn readiness_sees_the_listener_the_queue_age_and_the_relay_on_postgres() {
    readiness_sees_the_listener_the_queue_age_and_the_relay(TestDatabase::postgres().await).await;
}
