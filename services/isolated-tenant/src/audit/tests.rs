//! The audit chain against real databases: SQLite, and Postgres (`postgres::…`, ignored unless
//! run with `--include-ignored` and `HUSH_TEST_POSTGRES_URL`). Tampering is done the way a database superuser would: with
//! the append-only triggers switched off (Postgres: `ALTER TABLE … DISABLE TRIGGER ALL`;
//! SQLite: the triggers dropped).

use super::checkpoint::{self, Signer};
use super::verify::{verify, Finding, Report};
use super::*;
use crate::store::{self, Store};
use crate::{CorporateDomains, SealKeys};
use domain::{Email, GroupName, IdentityKind, Label};
use service_kit::testing::TestDatabase;
use std::path::PathBuf;
use std::sync::Arc;
use tenant_api::{AddMember, IdentityRef, MemberRef, ProvisionGroup};

struct Setup {
    store: Arc<dyn Store>,
    keys: Arc<SealKeys>,
    db: Db,
    database: TestDatabase,
    dir: tempfile::TempDir,
    signer: Signer,
    public: ed25519_dalek::VerifyingKey,
}

impl Setup {
    async fn new(database: TestDatabase) -> Self {
        let keys = Arc::new(SealKeys::parse(&SealKeys::generate_text()).unwrap());
        let corporate: CorporateDomains = "corp.example".parse().unwrap();
        let store = store::connect(database.url(), 4, keys.clone(), corporate)
            .await
            .unwrap();
        let db = store.audit_db();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("audit-signing.key");
        checkpoint::generate_signing_key_file(&key).unwrap();
        let signer = Signer::load(&key).unwrap();
        let public = checkpoint::load_public_key(&checkpoint::public_key_path(&key)).unwrap();
        Self {
            store,
            keys,
            db,
            database,
            dir,
            signer,
            public,
        }
    }

    fn checkpoints_path(&self) -> PathBuf {
        self.dir.path().join("audit-checkpoints.jsonl")
    }

    async fn checkpoint(&self) -> i64 {
        let path = self.checkpoints_path();
        let last = checkpoint::read_file(&path)
            .unwrap()
            .last()
            .map_or(0, |c| c.seq);
        checkpoint::checkpoint_now(&self.db, &self.signer, &path, last)
            .await
            .unwrap()
            .expect("new events to checkpoint")
            .seq
    }

    async fn verify(&self) -> Report {
        let cps = checkpoint::read_file(&self.checkpoints_path()).unwrap();
        verify(&self.db, &cps, &self.public).await.unwrap()
    }

    async fn events(&self) -> Vec<Event> {
        self.db.events_after(0, 1_000_000).await.unwrap()
    }

    async fn sql(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match &self.db {
            Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()),
            Db::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()),
        }
    }

    /// What a superuser can do: switch the append-only triggers off.
    async fn disable_triggers(&self) {
        match &self.db {
            Db::Postgres(_) => {
                self.sql("ALTER TABLE audit_events DISABLE TRIGGER ALL")
                    .await
                    .unwrap();
            }
            Db::Sqlite(_) => {
                self.sql("DROP TRIGGER audit_events_no_update")
                    .await
                    .unwrap();
                self.sql("DROP TRIGGER audit_events_no_delete")
                    .await
                    .unwrap();
            }
        }
    }

    /// Deletes every event and inserts `events` instead (triggers must be off).
    async fn rewrite(&self, events: &[Event]) {
        match &self.db {
            Db::Postgres(_) => self.sql("TRUNCATE audit_events").await.unwrap(),
            Db::Sqlite(_) => self.sql("DELETE FROM audit_events").await.unwrap(),
        };
        for e in events {
            let q = "INSERT INTO audit_events (seq, at_ms, service, actor, action, group_id, \
                     subject, request_id, prev_hash, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)";
            macro_rules! run {
                ($p:expr) => {
                    sqlx::query(q)
                        .bind(e.seq)
                        .bind(e.at_ms)
                        .bind(&e.service)
                        .bind(&e.actor)
                        .bind(&e.action)
                        .bind(&e.group_id)
                        .bind(&e.subject)
                        .bind(&e.request_id)
                        .bind(&e.prev_hash)
                        .bind(&e.hash)
                        .execute($p)
                        .await
                        .unwrap();
                };
            }
            match &self.db {
                Db::Postgres(p) => {
                    run!(p);
                }
                Db::Sqlite(p) => {
                    run!(p);
                }
            }
        }
    }

    async fn finish(self) {
        drop(self.store);
        match self.db {
            Db::Postgres(p) => p.close().await,
            Db::Sqlite(p) => p.close().await,
        }
        self.database.remove().await;
    }
}

fn label(name: &str) -> Label {
    Label::defaults()
        .into_iter()
        .find(|l| l.name.as_str() == name)
        .unwrap()
}

fn provision(n: u32) -> ProvisionGroup {
    ProvisionGroup {
        group_id: GroupId::from(Uuid::new_v4()),
        address: Email::parse(format!("group-{n}@groups.example")).unwrap(),
        display_name: GroupName::parse(format!("Group {n}")).unwrap(),
        sender_policy: None,
        anonymous_posting: false,
        owners: Vec::new(),
        label: None,
        group_type: domain::GroupType::Mail,
    }
}

const SUBJECT: &str = "subject-zq7-audit";
const EMAIL: &str = "wanda.audit@corp.example";
const GUEST_EMAIL: &str = "xavier.audit@elsewhere.example";

fn present() -> AddMember {
    AddMember {
        member: MemberRef {
            subject: Some(Subject::parse(SUBJECT).unwrap()),
            email: Some(Email::parse(EMAIL).unwrap()),
            kind: Some(IdentityKind::Member),
        },
        label: label("General"),
    }
}

fn guest_by_email(label_name: &str) -> AddMember {
    AddMember {
        member: MemberRef {
            subject: None,
            email: Some(Email::parse(GUEST_EMAIL).unwrap()),
            kind: None,
        },
        label: label(label_name),
    }
}

/// A flow touching every kind of state change; answers the two groups.
async fn flow(s: &Setup) -> (GroupId, GroupId) {
    let ctx = Context {
        service: Some("membership-api".into()),
        request_id: Some("req-audit-1".into()),
    };
    let a = provision(1);
    let b = provision(2);
    s.store
        .provision_group(&Context::tenant(), &a)
        .await
        .unwrap();
    s.store
        .provision_group(&Context::tenant(), &b)
        .await
        .unwrap();
    s.store
        .add_member(&ctx, a.group_id, &present())
        .await
        .unwrap();
    s.store
        .add_member(&ctx, b.group_id, &present())
        .await
        .unwrap();
    s.store
        .add_member(&Context::tenant(), a.group_id, &guest_by_email("General"))
        .await
        .unwrap();
    let who = IdentityRef {
        subject: None,
        email: Some(Email::parse(GUEST_EMAIL).unwrap()),
    };
    s.store
        .remove_member(&Context::tenant(), a.group_id, &who)
        .await
        .unwrap();
    let mut renamed = b.clone();
    renamed.display_name = GroupName::parse("Group two").unwrap();
    s.store
        .provision_group(&Context::tenant(), &renamed)
        .await
        .unwrap();
    s.store
        .offboard(
            &Context::tenant(),
            &IdentityRef::from(&Subject::parse(SUBJECT).unwrap()),
        )
        .await
        .unwrap();
    s.store
        .deprovision_group(&Context::tenant(), b.group_id)
        .await
        .unwrap();
    (a.group_id, b.group_id)
}

/// Generates each test on SQLite and on Postgres (ignored unless asked for: it needs
/// `HUSH_TEST_POSTGRES_URL`, and fails without it). Only the wrappers: the body is the test's.
macro_rules! on_both_backends {
    ($(async fn $name:ident($s:ident) $body:block)*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let $s = Setup::new(TestDatabase::sqlite()).await;
                    $body
                    $s.finish().await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test]
                #[ignore = "needs HUSH_TEST_POSTGRES_URL"]
                async fn $name() {
                    let $s = Setup::new(TestDatabase::postgres().await).await;
                    $body
                    $s.finish().await;
                }
            )*
        }
    };
}

on_both_backends! {
    async fn every_state_change_appends_an_event_and_the_chain_verifies(s) {
        let (a, b) = flow(&s).await;
        let events = s.events().await;
        let actions: Vec<(&str, Option<String>)> = events
            .iter()
            .map(|e| (e.action.as_str(), e.group_id.clone()))
            .collect();
        let (a, b) = (Some(a.to_string()), Some(b.to_string()));
        assert_eq!(
            actions,
            vec![
                (action::GROUP_PROVISIONED, a.clone()),
                (action::GROUP_PROVISIONED, b.clone()),
                (action::MEMBERSHIP_ADDED, a.clone()),
                (action::MEMBERSHIP_ADDED, b.clone()),
                (action::MEMBERSHIP_ADDED, a.clone()),
                (action::MEMBERSHIP_REMOVED, a.clone()),
                (action::GROUP_RENAMED, b.clone()),
                (action::IDENTITY_OFFBOARDED, None),
                (action::GROUP_DEPROVISIONED, b.clone()),
            ]
        );
        // The caller's service and request id, and `self` for the person acting for themselves.
        assert_eq!(events[2].service, "membership-api");
        assert_eq!(events[2].request_id.as_deref(), Some("req-audit-1"));
        assert_eq!(events[2].actor.as_deref(), Some("self"));
        assert_eq!(events[0].service, "isolated-tenant");
        assert!(events[4].actor.is_none(), "an add by address is not the person's own");
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=9).collect::<Vec<_>>());
        s.checkpoint().await;
        let report = s.verify().await;
        assert!(report.ok(), "{:?}", report.findings);
        assert_eq!(report.events, 9);
        assert_eq!(report.checkpoints, 1);
    }

    async fn a_mail_policy_change_appends_an_event_without_the_owners(s) {
        let g = provision(1);
        s.store.provision_group(&Context::tenant(), &g).await.unwrap();
        let mail = crate::mail::store::connect(s.database.url(), s.keys.clone()).await.unwrap();
        let owner = domain::Subject::parse(SUBJECT).unwrap();
        mail.set_policy(&Context::tenant(), g.group_id, domain::SenderPolicy::Owners, false, &[owner]).await.unwrap();
        let events = s.events().await;
        let last = events.last().unwrap();
        assert_eq!(last.action, action::MAIL_POLICY_SET);
        assert_eq!(last.group_id, Some(g.group_id.to_string()));
        assert!(last.subject.is_none() && last.actor.is_none(), "no owner named in the event");
        s.checkpoint().await;
        let report = s.verify().await;
        assert!(report.ok(), "{:?}", report.findings);
    }

    async fn a_refused_or_rolled_back_change_appends_nothing(s) {
        let g = provision(1);
        s.store.provision_group(&Context::tenant(), &g).await.unwrap();
        let before = s.events().await.len();
        // Confidential refuses guests: refused before anything is written.
        let refused = s.store.add_member(&Context::tenant(), g.group_id, &guest_by_email("Confidential")).await;
        assert!(matches!(refused, Err(crate::StoreError::LabelRefused(_))), "{refused:?}");
        // Unknown group.
        let missing = s.store.add_member(&Context::tenant(), GroupId::from(Uuid::new_v4()), &present()).await;
        assert!(matches!(missing, Err(crate::StoreError::GroupNotFound)));
        // A group confirmed unchanged is no change.
        s.store.provision_group(&Context::tenant(), &g).await.unwrap();
        assert_eq!(s.events().await.len(), before);
    }

    async fn a_bulk_chunk_appends_all_its_events_in_one_run(s) {
        use tenant_api::{ApplyBatch, BatchOp, BatchOpKind, GroupLabel};
        let g = provision(1);
        s.store.provision_group(&Context::tenant(), &g).await.unwrap();
        let op = |kind, n: u32| BatchOp {
            op: kind,
            group_id: g.group_id,
            subject: Some(Subject::parse(format!("bulk-person-{n}")).unwrap()),
            // An address in the corporate domains: a subject alone says nothing of the kind,
            // and someone of unknown kind is added nowhere.
            email: Some(Email::parse(format!("bulk-person-{n}@corp.example")).unwrap()),
        };
        let batch = ApplyBatch {
            ops: vec![
                op(BatchOpKind::Add, 1),
                op(BatchOpKind::Add, 2),
                op(BatchOpKind::Remove, 1),
            ],
            labels: vec![GroupLabel { group_id: g.group_id, label: label("General") }],
        };
        let ctx = Context {
            service: Some("bulk-api".into()),
            request_id: Some("req-bulk-7".into()),
        };
        let out = s.store.apply_batch(&ctx, &batch).await.unwrap();
        assert_eq!(out.applied, 3);
        let events = s.events().await;
        let chunk: Vec<&Event> = events.iter().filter(|e| e.service == "bulk-api").collect();
        assert_eq!(
            chunk.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            [action::MEMBERSHIP_ADDED, action::MEMBERSHIP_ADDED, action::MEMBERSHIP_REMOVED]
        );
        assert!(chunk.iter().all(|e| e.request_id.as_deref() == Some("req-bulk-7")));
        assert!(chunk.windows(2).all(|w| w[1].seq == w[0].seq + 1), "one run");
        assert_eq!(chunk[0].subject, chunk[2].subject, "the same person in the same group");
        assert!(s.verify().await.ok());
    }

    async fn the_checkpoint_writer_signs_after_n_events(s) {
        let path = s.checkpoints_path();
        let schedule = checkpoint::Schedule {
            every_events: 3,
            every: std::time::Duration::from_secs(3600),
            poll: std::time::Duration::from_millis(20),
        };
        let key = s.dir.path().join("audit-signing.key");
        // The writer's own looks at the chain, taken by the test (what `run` does every poll).
        let mut writer = checkpoint::Writer::new(
            s.db.clone(),
            Signer::load(&key).unwrap(),
            path.clone(),
            schedule,
        );
        s.store.provision_group(&Context::tenant(), &provision(1)).await.unwrap();
        s.store.provision_group(&Context::tenant(), &provision(2)).await.unwrap();
        assert_eq!(writer.run_once().await, None, "2 events: not yet");
        assert!(checkpoint::read_file(&path).unwrap().is_empty(), "2 events: not yet");
        s.store.provision_group(&Context::tenant(), &provision(3)).await.unwrap();
        let written = writer.run_once().await.expect("3 events: a checkpoint");
        let cps = checkpoint::read_file(&path).unwrap();
        assert_eq!(cps, vec![written]);
        assert_eq!(cps.len(), 1);
        assert_eq!(cps[0].seq, 3);
        assert!(cps[0].verifies(&s.public));
        assert!(s.verify().await.ok());
    }

    async fn the_audit_table_refuses_update_delete_and_truncate(s) {
        flow(&s).await;
        let n = s.events().await.len();
        for sql in [
            "UPDATE audit_events SET action = 'x' WHERE seq = 2",
            "DELETE FROM audit_events WHERE seq = 2",
            "DELETE FROM audit_events",
        ] {
            let err = s.sql(sql).await.expect_err(sql);
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        if matches!(s.db, Db::Postgres(_)) {
            let err = s.sql("TRUNCATE audit_events").await.expect_err("truncate");
            assert!(err.to_string().contains("append-only"), "{err}");
            // And nobody but the owner holds the privileges.
            let granted: i64 = match &s.db {
                Db::Postgres(p) => sqlx::query_scalar(
                    "SELECT count(*) FROM information_schema.role_table_grants \
                     WHERE table_name = 'audit_events' AND grantee = 'PUBLIC' \
                     AND privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')",
                )
                .fetch_one(p)
                .await
                .unwrap(),
                Db::Sqlite(_) => unreachable!(),
            };
            assert_eq!(granted, 0);
        }
        assert_eq!(s.events().await.len(), n);
        assert!(s.verify().await.ok());
    }

    async fn verify_names_an_edited_event(s) {
        flow(&s).await;
        s.checkpoint().await;
        s.disable_triggers().await;
        s.sql("UPDATE audit_events SET action = 'membership.removed' WHERE seq = 4").await.unwrap();
        let report = s.verify().await;
        assert_eq!(report.first(), Some(&Finding::Altered { seq: 4 }), "{:?}", report.findings);
        // Restoring the field restores the chain.
        s.sql("UPDATE audit_events SET action = 'membership.added' WHERE seq = 4").await.unwrap();
        assert!(s.verify().await.ok());
    }

    async fn verify_names_a_deleted_event(s) {
        flow(&s).await;
        s.checkpoint().await;
        s.disable_triggers().await;
        s.sql("DELETE FROM audit_events WHERE seq = 5").await.unwrap();
        let report = s.verify().await;
        assert_eq!(report.first(), Some(&Finding::Missing { from: 5, to: 5 }), "{:?}", report.findings);
        // Cutting off the end is caught by the checkpoint.
        s.sql("DELETE FROM audit_events WHERE seq >= 8").await.unwrap();
        let report = s.verify().await;
        assert!(report.findings.contains(&Finding::Missing { from: 8, to: 9 }), "{:?}", report.findings);
    }

    async fn verify_names_a_reordered_event(s) {
        flow(&s).await;
        s.checkpoint().await;
        s.disable_triggers().await;
        s.sql("UPDATE audit_events SET seq = 1000 WHERE seq = 6").await.unwrap();
        s.sql("UPDATE audit_events SET seq = 6 WHERE seq = 7").await.unwrap();
        s.sql("UPDATE audit_events SET seq = 7 WHERE seq = 1000").await.unwrap();
        let report = s.verify().await;
        assert_eq!(report.first(), Some(&Finding::Altered { seq: 6 }), "{:?}", report.findings);
    }

    async fn verify_names_a_truncate_and_rewrite(s) {
        flow(&s).await;
        let first = s.checkpoint().await;
        assert_eq!(first, 9);
        let g = provision(3);
        s.store.provision_group(&Context::tenant(), &g).await.unwrap();
        s.store.add_member(&Context::tenant(), g.group_id, &present()).await.unwrap();
        let second = s.checkpoint().await;
        assert_eq!(second, 11);
        // The rewriter drops event 10 and re-chains everything after it, so the table is
        // consistent link by link; only the signed checkpoint can tell.
        let mut events = s.events().await;
        events.remove(9);
        let mut forged: Vec<Event> = events[..9].to_vec();
        let mut prev = forged.last().unwrap().hash.clone();
        for (i, e) in events[9..].iter().enumerate() {
            let mut e = e.clone();
            e.seq = 10 + i as i64;
            e.prev_hash = prev;
            e.hash = e.computed_hash().to_vec();
            prev = e.hash.clone();
            forged.push(e);
        }
        // …and appends one event to keep the count.
        let mut extra = forged.last().unwrap().clone();
        extra.seq += 1;
        extra.action = "group.renamed".into();
        extra.prev_hash = prev;
        extra.hash = extra.computed_hash().to_vec();
        forged.push(extra);
        s.disable_triggers().await;
        s.rewrite(&forged).await;
        let report = s.verify().await;
        assert_eq!(
            report.first(),
            Some(&Finding::Rewritten { from: 10, checkpoint: 11 }),
            "{:?}",
            report.findings
        );
        // A whole table emptied is caught too.
        s.rewrite(&[]).await;
        let report = s.verify().await;
        assert_eq!(report.first(), Some(&Finding::Missing { from: 1, to: 9 }), "{:?}", report.findings);
    }

    async fn a_forged_checkpoint_is_refused(s) {
        flow(&s).await;
        s.checkpoint().await;
        let path = s.checkpoints_path();
        let mut cps = checkpoint::read_file(&path).unwrap();
        cps[0].seq = 3;
        let report = verify(&s.db, &cps, &s.public).await.unwrap();
        assert_eq!(
            report.first(),
            Some(&Finding::BadCheckpoint { line: 1, why: "signature does not verify" })
        );
        let other = tempfile::tempdir().unwrap();
        let key = other.path().join("k");
        checkpoint::generate_signing_key_file(&key).unwrap();
        let stranger = checkpoint::load_public_key(&checkpoint::public_key_path(&key)).unwrap();
        let cps = checkpoint::read_file(&path).unwrap();
        let report = verify(&s.db, &cps, &stranger).await.unwrap();
        assert_eq!(
            report.first(),
            Some(&Finding::BadCheckpoint { line: 1, why: "signed by another key" })
        );
    }

    async fn an_investigator_with_the_keys_finds_a_persons_events_in_a_group(s) {
        let g = provision(1);
        let other = provision(2);
        s.store.provision_group(&Context::tenant(), &g).await.unwrap();
        s.store.provision_group(&Context::tenant(), &other).await.unwrap();
        s.store.add_member(&Context::tenant(), g.group_id, &present()).await.unwrap();
        s.store.add_member(&Context::tenant(), other.group_id, &present()).await.unwrap();
        s.store.add_member(&Context::tenant(), g.group_id, &guest_by_email("General")).await.unwrap();
        let p = lookup::pseudonyms(
            &s.db,
            &s.keys,
            g.group_id,
            None,
            Some(&Email::parse(EMAIL).unwrap()),
        )
        .await
        .unwrap();
        let mine: Vec<i64> = s
            .events()
            .await
            .iter()
            .filter(|e| e.subject.as_ref().is_some_and(|x| p.member.contains(x)))
            .map(|e| e.seq)
            .collect();
        assert_eq!(mine, [3], "their add to this group, not the other group's, not the guest's");
    }

    async fn verify_never_creates_a_database(s) {
        let missing = s.dir.path().join("typo.db");
        let url = format!("sqlite://{}", missing.display());
        assert!(Db::open(&url).await.is_err());
        assert!(!missing.exists());
    }

    async fn inv6_no_audit_event_holds_a_clear_subject_or_email(s) {
        flow(&s).await;
        let clear = [SUBJECT, EMAIL, GUEST_EMAIL, "wanda", "xavier"];
        for e in s.events().await {
            let text = format!("{e:?}").to_lowercase();
            for c in clear {
                assert!(!text.contains(&c.to_lowercase()), "event {} holds {c}: {text}", e.seq);
            }
        }
    }

    async fn inv5_audit_pseudonyms_do_not_link_a_person_across_groups(s) {
        let (a, b) = flow(&s).await;
        let events = s.events().await;
        let added = |g: GroupId| {
            events
                .iter()
                .find(|e| {
                    e.action == action::MEMBERSHIP_ADDED && e.group_id == Some(g.to_string())
                })
                .and_then(|e| e.subject.clone())
                .unwrap()
        };
        // The same person, added to two groups: two unrelated pseudonyms.
        let (pa, pb) = (added(a), added(b));
        assert_ne!(pa, pb);
        let offboarded = events
            .iter()
            .find(|e| e.action == action::IDENTITY_OFFBOARDED)
            .unwrap();
        assert!(offboarded.group_id.is_none());
        let po = offboarded.subject.clone().unwrap();
        assert!(po != pa && po != pb);
        // No pseudonym of this person appears in events of two different groups.
        let mut groups_by_subject: std::collections::HashMap<&str, std::collections::HashSet<Option<&str>>> =
            std::collections::HashMap::new();
        for e in &events {
            if let Some(p) = &e.subject {
                groups_by_subject.entry(p).or_default().insert(e.group_id.as_deref());
            }
        }
        assert!(groups_by_subject.values().all(|g| g.len() == 1), "{groups_by_subject:?}");
    }
}
