//! The store's behaviour, each test on SQLite and again on Postgres (`postgres::…`, ignored unless
//! run with `--include-ignored` and `HUSH_TEST_POSTGRES_URL`; each test gets a fresh database
//! `hush_t_<random hex>`, so tests never share state).
//!
//! The tests named after an invariant prove it against the tables themselves: a full dump of
//! the tenant's database must not name a person or link two memberships of the same person.

use super::postgres::PG_MIGRATIONS;
use super::sqlite::SQLITE_MIGRATIONS;
use super::turns::{Turns, Writer};
use super::*;
use crate::identity::CorporateDomains;
use crate::seal::{Profile, SealKeys};
use domain::{Email, EntryRule, IdentityKind, Label};
use service_kit::testing::TestDatabase;
use std::time::Duration;
use tenant_api::{ApplyRule, MemberRef};
use uuid::Uuid;

/// A store under test and the database to reopen or remove.
struct TestDb {
    store: Arc<dyn Store>,
    raw: Raw,
    database: TestDatabase,
}

/// The concrete store, for statements the trait does not offer (tampering, constraints).
enum Raw {
    SqliteStore(SqliteStore),
    PgStore(PgStore),
}

impl Raw {
    async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match self {
            Raw::SqliteStore(s) => sqlx::query(sql)
                .execute(s.pool())
                .await
                .map(|r| r.rows_affected()),
            Raw::PgStore(s) => sqlx::query(sql)
                .execute(s.pool())
                .await
                .map(|r| r.rows_affected()),
        }
    }
}

fn keys_from(text: &str) -> Arc<SealKeys> {
    Arc::new(SealKeys::parse(text).unwrap())
}

fn fresh_keys() -> (Arc<SealKeys>, String) {
    let text = SealKeys::generate_text().to_string();
    (keys_from(&text), text)
}

impl TestDb {
    async fn sqlite(keys: Arc<SealKeys>) -> Self {
        let database = TestDatabase::sqlite();
        let pool = db::connect_sqlite(database.url(), 4).await.unwrap();
        let store = SqliteStore::migrate(pool, keys)
            .await
            .unwrap()
            .with_corporate_domains(corporate());
        Self {
            store: Arc::new(store.clone()),
            raw: Raw::SqliteStore(store),
            database,
        }
    }

    async fn postgres(keys: Arc<SealKeys>) -> Self {
        let database = TestDatabase::postgres().await;
        let pool = db::connect_postgres(database.url(), 8).await.unwrap();
        let store = PgStore::migrate(pool, keys)
            .await
            .unwrap()
            .with_corporate_domains(corporate());
        Self {
            store: Arc::new(store.clone()),
            raw: Raw::PgStore(store),
            database,
        }
    }

    /// A Postgres store whose pool logs every statement at TRACE: sqlx's statement log, which
    /// every service's pool has off (INV-6), turned on for the test that compares the
    /// statements of writes.
    async fn postgres_logging_statements(
        database: &TestDatabase,
        keys: Arc<SealKeys>,
    ) -> Arc<dyn Store> {
        use sqlx::ConnectOptions as _;
        let options = database
            .url()
            .parse::<sqlx::postgres::PgConnectOptions>()
            .unwrap()
            .log_statements(log::LevelFilter::Trace);
        let pool = db::refuse_open_transactions(sqlx::postgres::PgPoolOptions::new())
            .max_connections(4)
            .connect_with(options)
            .await
            .unwrap();
        let store = PgStore::migrate(pool, keys)
            .await
            .unwrap()
            .with_corporate_domains(corporate());
        Arc::new(store)
    }

    /// The same database behind another set of keys (a restart after a key rotation).
    async fn reopen(&self, keys: Arc<SealKeys>) -> Arc<dyn Store> {
        connect(self.database.url(), 4, keys, corporate())
            .await
            .unwrap()
    }

    async fn finish(self) {
        let Self {
            raw,
            store,
            database,
        } = self;
        drop(store);
        match raw {
            Raw::SqliteStore(s) => s.pool().close().await,
            Raw::PgStore(s) => s.pool().close().await,
        }
        database.remove().await;
    }
}

/// Generates each test twice: `sqlite::name`, and `postgres::name`, ignored unless asked for
/// since it needs `HUSH_TEST_POSTGRES_URL` (and fails without it). Only the wrappers: the body
/// is the test's.
macro_rules! on_both_backends {
    ($(async fn $name:ident($db:ident, $keys:ident, $key_text:ident) $body:block)*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let ($keys, $key_text) = fresh_keys();
                    let _ = &$key_text;
                    let $db = TestDb::sqlite($keys.clone()).await;
                    $body
                    $db.finish().await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test]
                #[ignore = "needs HUSH_TEST_POSTGRES_URL"]
                async fn $name() {
                    let ($keys, $key_text) = fresh_keys();
                    let _ = &$key_text;
                    let $db = TestDb::postgres($keys.clone()).await;
                    $body
                    $db.finish().await;
                }
            )*
        }
    };
}

fn subject(s: &str) -> Subject {
    Subject::parse(s).unwrap()
}

/// The tests' corporate domain: addresses elsewhere, added by address, are guests.
fn corporate() -> CorporateDomains {
    "corp.example".parse().unwrap()
}

fn label(name: &str) -> Label {
    Label::defaults()
        .into_iter()
        .find(|l| l.name.as_str() == name)
        .unwrap()
}

/// Someone present with their token (subject, address, kind), added to a group labelled
/// General.
fn member(s: &str, email: &str) -> AddMember {
    AddMember {
        member: MemberRef {
            subject: Some(subject(s)),
            email: Some(Email::parse(email).unwrap()),
            kind: Some(IdentityKind::Member),
        },
        label: label("General"),
    }
}

/// Someone an owner adds by address (no kind: the tenant resolves it), to a group labelled
/// General.
fn by_email(email: &str) -> AddMember {
    AddMember {
        member: MemberRef {
            subject: None,
            email: Some(Email::parse(email).unwrap()),
            kind: None,
        },
        label: label("General"),
    }
}

fn who(s: &str) -> IdentityRef {
    IdentityRef::from(&subject(s))
}

fn who_email(email: &str) -> IdentityRef {
    IdentityRef {
        subject: None,
        email: Some(Email::parse(email).unwrap()),
    }
}

/// The subject and the reference of a test add.
trait Named {
    fn subject(&self) -> Subject;
    fn who(&self) -> IdentityRef;
}

impl Named for AddMember {
    fn subject(&self) -> Subject {
        self.member.subject.clone().expect("added by subject")
    }

    fn who(&self) -> IdentityRef {
        IdentityRef::from(&self.member)
    }
}

fn request(id: GroupId, local: &str) -> ProvisionGroup {
    ProvisionGroup {
        group_id: id,
        address: Email::parse(format!("{local}@groups.test.example")).unwrap(),
        display_name: domain::GroupName::parse(format!("Group {local}")).unwrap(),
        sender_policy: None,
        anonymous_posting: false,
        owners: Vec::new(),
        label: None,
        group_type: domain::GroupType::Mail,
    }
}

async fn group(store: &dyn Store, local: &str) -> GroupId {
    let id = GroupId::new();
    store
        .provision_group(&Context::tenant(), &request(id, local))
        .await
        .unwrap();
    id
}

/// The hex form in a dumped cell (UUIDs on Postgres show as `uuid hex`).
fn hex_token(cell: &str, len: usize) -> String {
    cell.split(' ')
        .find(|t| t.len() == len && t.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no {len}-digit hex in {cell:?}"))
        .to_string()
}

fn hex_of(s: &str) -> String {
    hex::encode(s.as_bytes())
}

/// Every cell of every table, for "appears nowhere" checks.
fn cells(dump: &[(String, Vec<Vec<String>>)]) -> Vec<(String, String)> {
    dump.iter()
        .flat_map(|(t, rows)| {
            rows.iter()
                .flatten()
                .map(move |c| (t.clone(), c.to_lowercase()))
        })
        .collect()
}

fn table<'a>(dump: &'a [(String, Vec<Vec<String>>)], name: &str) -> &'a [Vec<String>] {
    &dump
        .iter()
        .find(|(t, _)| t == name)
        .unwrap_or_else(|| panic!("no table {name}"))
        .1
}

on_both_backends! {
    async fn provisioning_is_idempotent_and_guards_addresses(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let id = GroupId::new();
        let first = s.provision_group(&Context::tenant(), &request(id, "parents")).await.unwrap();
        assert!(first.created);
        let again = s.provision_group(&Context::tenant(), &request(id, "parents")).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.group, first.group);

        let mut renamed = request(id, "parents");
        renamed.display_name = domain::GroupName::parse("Parents at Work").unwrap();
        assert_eq!(s.provision_group(&Context::tenant(), &renamed).await.unwrap().group.display_name, renamed.display_name);

        let other = GroupId::new();
        assert!(matches!(s.provision_group(&Context::tenant(), &request(other, "parents")).await, Err(StoreError::AddressTaken)));
        assert!(matches!(s.provision_group(&Context::tenant(), &request(id, "elsewhere")).await, Err(StoreError::AddressMismatch)));
    }

    async fn add_check_groups_of_count_and_remove_round_trip(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2) = (group(s, "one").await, group(s, "two").await);
        let alice = member("alice", "alice@corp.example");
        let bob = subject("bob");

        assert!(!s.is_member(g1, &alice.subject(), None).await.unwrap());
        s.add_member(&Context::tenant(), g1, &alice).await.unwrap();
        s.add_member(&Context::tenant(), g2, &alice).await.unwrap();
        assert!(s.is_member(g1, &alice.subject(), None).await.unwrap());
        assert!(s.is_member(g2, &alice.subject(), None).await.unwrap());
        assert!(!s.is_member(g1, &bob, None).await.unwrap());

        let mut both = vec![g1, g2];
        both.sort();
        assert_eq!(s.groups_of(&alice.subject(), None).await.unwrap(), both);
        assert!(s.groups_of(&bob, None).await.unwrap().is_empty());
        assert_eq!(s.member_count(g1).await.unwrap(), CountBucket::Under10);
        // Among named groups only: an unknown group and one she is not in are left out.
        let among = [g2, GroupId::new()];
        assert_eq!(
            s.groups_among(&alice.subject(), None, &among).await.unwrap(),
            vec![g2]
        );
        assert!(s.groups_among(&bob, None, &both).await.unwrap().is_empty());

        s.remove_member(&Context::tenant(), g1, &alice.who()).await.unwrap();
        assert!(!s.is_member(g1, &alice.subject(), None).await.unwrap());
        assert!(s.is_member(g2, &alice.subject(), None).await.unwrap());
        assert_eq!(s.groups_of(&alice.subject(), None).await.unwrap(), vec![g2]);
    }

    async fn writes_are_idempotent_and_leave_the_same_rows_whether_or_not_a_member_inv_3(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let g = group(s, "g").await;
        let alice = member("alice", "alice@corp.example");

        s.add_member(&Context::tenant(), g, &alice).await.unwrap();
        let once = s.dump().await;
        s.add_member(&Context::tenant(), g, &alice).await.unwrap();
        let twice = s.dump().await;
        // The same rows (same keys, same lengths); only ciphertexts (fresh nonces) differ.
        assert_eq!(shape(&once), shape(&twice));
        assert_eq!(table(&once, "memberships")[0][0], table(&twice, "memberships")[0][0], "same member_tag");
        assert_eq!(table(&once, "identities"), table(&twice, "identities"), "the identity row is not rewritten");

        s.remove_member(&Context::tenant(), g, &alice.who()).await.unwrap();
        s.remove_member(&Context::tenant(), g, &alice.who()).await.unwrap();
        s.remove_member(&Context::tenant(), g, &who("never-seen")).await.unwrap();
        assert!(!s.is_member(g, &alice.subject(), None).await.unwrap());
        assert!(table(&s.dump().await, "memberships").is_empty());
        assert_eq!(table(&s.dump().await, "identities").len(), 1, "removal never creates identities");
    }

    async fn unknown_groups_are_not_found_and_unknown_subjects_have_no_groups(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let nowhere = GroupId::new();
        let alice = member("alice", "alice@corp.example");
        assert!(matches!(s.add_member(&Context::tenant(), nowhere, &alice).await, Err(StoreError::GroupNotFound)));
        assert!(matches!(s.remove_member(&Context::tenant(), nowhere, &alice.who()).await, Err(StoreError::GroupNotFound)));
        assert!(matches!(s.is_member(nowhere, &alice.subject(), None).await, Err(StoreError::GroupNotFound)));
        assert!(matches!(s.member_count(nowhere).await, Err(StoreError::GroupNotFound)));
        assert!(s.groups_of(&alice.subject(), None).await.unwrap().is_empty());
        assert!(table(&s.dump().await, "identities").is_empty(), "nothing written for a missing group");
    }

    async fn counts_are_buckets(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let g = group(s, "big").await;
        for i in 0..10 {
            s.add_member(&Context::tenant(), g, &member(&format!("p{i}"), &format!("p{i}@corp.example"))).await.unwrap();
        }
        assert_eq!(s.member_count(g).await.unwrap(), CountBucket::From10To49);
        s.remove_member(&Context::tenant(), g, &who("p0")).await.unwrap();
        assert_eq!(s.member_count(g).await.unwrap(), CountBucket::Under10);
    }

    async fn the_shown_bucket_holds_until_its_refresh_however_an_owner_writes_inv_4(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let g = group(s, "calibrated").await;
        let day = crate::groups::COUNT_SNAPSHOT_MIN_MS;
        let t0 = 1_800_000_000_000;
        // Nine members: the owner's first look takes the snapshot.
        for i in 0..9 {
            s.add_member(&Context::tenant(), g, &member(&format!("p{i}"), &format!("p{i}@corp.example"))).await.unwrap();
        }
        assert_eq!(s.shown_count(g, t0, t0 + day).await.unwrap(), CountBucket::Under10);
        // The calibration attack: a tenth person tips the live count over the edge, then a
        // removal and a target's add probe whether the target was in. Every look in between
        // answers the snapshot, whatever the next refresh drawn for it.
        let look = |at: i64| s.shown_count(g, at, at + day);
        s.add_member(&Context::tenant(), g, &member("filler", "filler@corp.example")).await.unwrap();
        assert_eq!(s.member_count(g).await.unwrap(), CountBucket::From10To49, "live: over the edge");
        assert_eq!(look(t0 + 1).await.unwrap(), CountBucket::Under10);
        s.remove_member(&Context::tenant(), g, &who("filler")).await.unwrap();
        s.add_member(&Context::tenant(), g, &member("target", "target@corp.example")).await.unwrap();
        assert_eq!(look(t0 + day / 2).await.unwrap(), CountBucket::Under10);
        assert_eq!(look(t0 + day - 1).await.unwrap(), CountBucket::Under10);
        // At the refresh moment the next look takes a new snapshot, kept again until its own.
        assert_eq!(look(t0 + day).await.unwrap(), CountBucket::From10To49);
        s.remove_member(&Context::tenant(), g, &who("target")).await.unwrap();
        assert_eq!(look(t0 + day + 1).await.unwrap(), CountBucket::From10To49);
        assert!(matches!(s.shown_count(GroupId::new(), t0, t0 + day).await, Err(StoreError::GroupNotFound)));
        // Deprovisioning takes the snapshot with the group.
        s.deprovision_group(&Context::tenant(), g).await.unwrap();
        assert!(table(&s.dump().await, "count_snapshots").is_empty(), "no snapshot of a gone group");
    }

    async fn deprovisioning_removes_rows_and_list_entries_and_is_idempotent(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (doomed, kept) = (group(s, "doomed").await, group(s, "kept").await);
        for i in 0..3 {
            let m = member(&format!("p{i}"), &format!("p{i}@corp.example"));
            s.add_member(&Context::tenant(), doomed, &m).await.unwrap();
            s.add_member(&Context::tenant(), kept, &m).await.unwrap();
        }
        let solo = member("solo", "solo@corp.example");
        s.add_member(&Context::tenant(), doomed, &solo).await.unwrap();

        s.deprovision_group(&Context::tenant(), doomed).await.unwrap();
        s.deprovision_group(&Context::tenant(), doomed).await.unwrap();
        assert!(matches!(s.member_count(doomed).await, Err(StoreError::GroupNotFound)));
        assert_eq!(s.groups_of(&subject("p1"), None).await.unwrap(), vec![kept]);
        assert!(s.groups_of(&solo.subject(), None).await.unwrap().is_empty());
        assert!(s.is_member(kept, &subject("p2"), None).await.unwrap());
        assert_eq!(table(&s.dump().await, "memberships").len(), 3);

        // The same id provisioned again starts empty.
        s.provision_group(&Context::tenant(), &request(doomed, "doomed")).await.unwrap();
        assert!(!s.is_member(doomed, &solo.subject(), None).await.unwrap());
        assert_eq!(s.member_count(doomed).await.unwrap(), CountBucket::Under10);
    }

    async fn a_membership_write_leaves_a_known_persons_row_as_it_is(db, _keys, _key_text) {
        // No per-person row is rewritten by joins and leaves, so nothing in the database's log
        // ties one person's memberships in different groups together (issue 16).
        let s = db.store.as_ref();
        let (g1, g2, g3) = (group(s, "g1").await, group(s, "g2").await, group(s, "g3").await);
        let alice = member("alice", "alice@corp.example");
        s.add_member(&Context::tenant(), g1, &alice).await.unwrap();
        let before = table(&s.dump().await, "identities").to_vec();
        assert_eq!(before.len(), 1);
        s.add_member(&Context::tenant(), g2, &alice).await.unwrap();
        s.add_member(&Context::tenant(), g3, &by_email("alice@corp.example")).await.unwrap();
        s.remove_member(&Context::tenant(), g1, &alice.who()).await.unwrap();
        s.add_member(&Context::tenant(), g2, &alice).await.unwrap();
        let batch = ApplyBatch {
            ops: vec![tenant_api::BatchOp {
                op: tenant_api::BatchOpKind::Add,
                group_id: g1,
                subject: None,
                email: Some(Email::parse("alice@corp.example").unwrap()),
            }],
            labels: vec![tenant_api::GroupLabel { group_id: g1, label: label("General") }],
        };
        assert_eq!(s.apply_batch(&Context::tenant(), &batch).await.unwrap().applied, 1);
        assert_eq!(
            table(&s.dump().await, "identities"),
            &before[..],
            "the identity row is byte for byte what the first add wrote"
        );
        assert_eq!(s.groups_of(&alice.subject(), None).await.unwrap(), sorted(vec![g1, g2, g3]));
        assert_eq!(table(&s.dump().await, "memberships").len(), 3);
    }

    async fn a_dump_names_no_one_and_links_no_rows_inv_5(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2) = (group(s, "witness-support").await, group(s, "parents").await);
        // Carol joined with her token; Dora was added by an owner by address only; Ollie was
        // a member of both and has been offboarded.
        let carol = member("carol-7f3a-subject", "carol.hidden@corp.example");
        let dora = by_email("Dora.Secret@Partner.Example");
        let ollie = member("ollie-9c1e-subject", "ollie.gone@corp.example");
        for g in [g1, g2] {
            s.add_member(&Context::tenant(), g, &carol).await.unwrap();
            s.add_member(&Context::tenant(), g, &dora).await.unwrap();
            s.add_member(&Context::tenant(), g, &ollie).await.unwrap();
        }
        s.offboard(&Context::tenant(), &ollie.who()).await.unwrap();

        let dump = s.dump().await;
        for needle in [
            "carol-7f3a-subject", "carol.hidden@corp.example", "carol", "hidden@",
            "dora.secret@partner.example", "dora", "secret@", "partner.example",
            "ollie-9c1e-subject", "ollie.gone@corp.example", "ollie", "gone@",
        ] {
            for (t, cell) in cells(&dump) {
                assert!(!cell.contains(needle), "{needle:?} appears in clear in {t}");
                assert!(!cell.contains(&hex_of(needle)), "{needle:?} appears as hex in {t}");
            }
        }

        // Ollie left no row behind; Dora's identity has no subject, only an address tag.
        // id, subject_tag, sealed_profile, key_id, sign_in_enabled, disabled, email_tag
        let identities = table(&dump, "identities");
        assert_eq!(identities.len(), 2, "the offboarded identity is gone");
        assert!(identities.iter().any(|r| r[1].is_empty() && r[6].len() == 64), "{identities:?}");
        assert!(identities.iter().all(|r| r[6].len() == 64), "both are found by address");
        let mut secrets = Vec::new();
        for r in identities {
            secrets.push(hex_token(&r[0], 32));
            secrets.push(r[6].clone());
            if !r[1].is_empty() {
                secrets.push(hex_token(&r[1], 64));
            }
        }

        let rows = table(&dump, "memberships");
        assert_eq!(rows.len(), 4, "two people in two groups; Ollie's rows are gone");
        // member_tag, group_id, sealed_identity, key_id
        for (i, a) in rows.iter().enumerate() {
            for b in &rows[i + 1..] {
                assert_ne!(a[0], b[0], "member tags never repeat");
                assert_ne!(a[2], b[2], "sealed identities never repeat (fresh nonces)");
                assert_eq!(a[3], b[3], "only the key id is shared, and every row has it");
            }
            for cell in a {
                for secret in &secrets {
                    assert!(!cell.contains(secret.as_str()), "a membership row holds an identity's id or tag");
                }
            }
        }
        // The identities say nothing of groups.
        for g in [g1, g2] {
            let g_hex = hex::encode(g.as_uuid().as_bytes());
            for r in identities {
                assert!(r.iter().all(|c| !c.contains(&g_hex) && !c.contains(&g.to_string())));
            }
        }
        // And yet every lookup works, with the keys.
        assert_eq!(s.groups_of(&carol.subject(), None).await.unwrap(), sorted(vec![g1, g2]));
        assert!(s.groups_of(&ollie.subject(), None).await.unwrap().is_empty());
    }

    async fn identities_can_never_sign_in_inv_9(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let g = group(s, "g").await;
        s.add_member(&Context::tenant(), g, &member("alice", "alice@corp.example")).await.unwrap();
        let dump = s.dump().await;
        // id, subject_tag, sealed_profile, key_id, sign_in_enabled, disabled, email_tag
        assert_eq!(table(&dump, "identities")[0][4], "false");
        let refused = db.raw.execute("UPDATE identities SET sign_in_enabled = TRUE").await;
        assert!(refused.is_err(), "the schema refuses sign-in");
    }

    async fn a_dump_does_not_say_which_group_has_how_many_members(db, keys, _key_text) {
        let s = db.store.as_ref();
        let (big, small) = (group(s, "big").await, group(s, "small").await);
        for i in 0..3 {
            s.add_member(&Context::tenant(), big, &member(&format!("p{i}"), &format!("p{i}@corp.example"))).await.unwrap();
        }
        s.add_member(&Context::tenant(), small, &member("solo", "solo@corp.example")).await.unwrap();
        let dump = s.dump().await;
        let rows = table(&dump, "memberships");
        assert_eq!(rows.len(), 4);
        for g in [big, small] {
            let (id, hex_id) = (g.to_string(), hex::encode(g.as_uuid().as_bytes()));
            for row in rows {
                assert!(!row.iter().any(|v| v.contains(&id) || v.contains(&hex_id)),
                        "a membership row names its group: {row:?}");
            }
        }
        // The rows still group by a keyed reference (so the size distribution shows), which
        // only the key ties to a group.
        let big_ref = hex::encode(keys.active().group_ref(big).as_bytes());
        assert_eq!(rows.iter().filter(|r| r[1].contains(&big_ref)).count(), 3);
    }

    async fn a_membership_moved_to_another_group_does_not_open(db, keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2) = (group(s, "one").await, group(s, "two").await);
        s.add_member(&Context::tenant(), g1, &member("alice", "alice@corp.example")).await.unwrap();
        s.add_member(&Context::tenant(), g2, &member("bob", "bob@corp.example")).await.unwrap();
        // Give the row with the lower group reference the other row's sealed identity.
        db.raw
            .execute(
                "UPDATE memberships SET sealed_identity = \
                 (SELECT m.sealed_identity FROM memberships m WHERE m.group_ref <> memberships.group_ref) \
                 WHERE group_ref = (SELECT group_ref FROM memberships ORDER BY group_ref LIMIT 1)",
            )
            .await
            .unwrap();
        let r = |g: GroupId| keys.active().group_ref(g);
        let tampered = if r(g1) < r(g2) { g1 } else { g2 };
        // Ending the memberships a stricter rule bars opens every row of the group.
        let mut tight = EntryRule::of(&label("General").name, &label("General").policy);
        tight.guests_allowed = false;
        let refused = s.apply_rule(&Context::tenant(), &ApplyRule { rule: tight, groups: vec![tampered] }).await;
        assert!(matches!(refused, Err(StoreError::Sealed(_))), "{refused:?}");
        assert!(s.is_member(tampered, &subject("alice"), None).await.is_ok(), "lookups use tags, not seals");
    }

    async fn keys_rotate_without_losing_anyone(db, keys, key_text) {
        let s = db.store.as_ref();
        let (g1, g2) = (group(s, "one").await, group(s, "two").await);
        let alice = member("alice", "alice@corp.example");
        s.add_member(&Context::tenant(), g1, &alice).await.unwrap();
        s.add_member(&Context::tenant(), g2, &alice).await.unwrap();
        let old_kid = keys.active().id().to_string();

        let new_text = SealKeys::generate_text();
        let rotated = db.reopen(keys_from(&format!("{},{}", new_text.as_str(), key_text))).await;
        let new_kid = rotated_kid(&new_text);
        assert!(rotated.is_member(g1, &alice.subject(), None).await.unwrap());
        assert_eq!(rotated.groups_of(&alice.subject(), None).await.unwrap().len(), 2);

        // A write moves what it touches to the new key.
        rotated.add_member(&Context::tenant(), g1, &alice).await.unwrap();
        let dump = rotated.dump().await;
        assert_eq!(table(&dump, "identities")[0][3], new_kid);
        let kids: Vec<&str> = table(&dump, "memberships").iter().map(|r| r[3].as_str()).collect();
        assert!(kids.contains(&new_kid.as_str()) && kids.contains(&old_kid.as_str()));
        assert_eq!(table(&dump, "memberships").len(), 2, "moved, not duplicated");

        rotated.remove_member(&Context::tenant(), g2, &alice.who()).await.unwrap();
        assert_eq!(rotated.groups_of(&alice.subject(), None).await.unwrap(), vec![g1]);

        // Everything alice has left is under the new key: the old one can go.
        let only_new = db.reopen(keys_from(&new_text)).await;
        assert!(only_new.is_member(g1, &alice.subject(), None).await.unwrap());
        assert!(!only_new.is_member(g2, &alice.subject(), None).await.unwrap());
        assert_eq!(only_new.groups_of(&alice.subject(), None).await.unwrap(), vec![g1]);
    }

    async fn concurrent_adds_of_one_person_lose_no_group(db, _keys, _key_text) {
        let s = db.store.clone();
        let mut groups = Vec::new();
        for i in 0..12 {
            groups.push(group(s.as_ref(), &format!("c{i}")).await);
        }
        let dave = member("dave", "dave@corp.example");
        let tasks: Vec<_> = groups
            .iter()
            .map(|g| {
                let (s, g, dave) = (s.clone(), *g, dave.clone());
                tokio::spawn(async move { s.add_member(&Context::tenant(), g, &dave).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        groups.sort();
        assert_eq!(s.groups_of(&dave.subject(), None).await.unwrap(), groups);
        assert_eq!(table(&s.dump().await, "identities").len(), 1, "one identity, created once");
    }

    async fn concurrent_adds_by_address_and_by_token_make_one_identity(db, _keys, _key_text) {
        let s = db.store.clone();
        let mut groups = Vec::new();
        for i in 0..12 {
            groups.push(group(s.as_ref(), &format!("c{i}")).await);
        }
        // Owners add Fran by address while she joins other groups with her token.
        let tasks: Vec<_> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let (s, g) = (s.clone(), *g);
                let add = if i % 2 == 0 {
                    by_email("fran@corp.example")
                } else {
                    member("fran", "fran@corp.example")
                };
                tokio::spawn(async move { s.add_member(&Context::tenant(), g, &add).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(table(&s.dump().await, "identities").len(), 1, "one identity, bound once");
        assert_eq!(s.groups_of(&subject("fran"), None).await.unwrap(), sorted(groups));
        assert_eq!(table(&s.dump().await, "memberships").len(), 12);
    }

    async fn deprovisioning_while_people_join_leaves_no_orphans(db, _keys, _key_text) {
        let s = db.store.clone();
        let g = group(s.as_ref(), "busy").await;
        let other = group(s.as_ref(), "other").await;
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let m = member(&format!("j{i}"), &format!("j{i}@corp.example"));
                    s.add_member(&Context::tenant(), other, &m).await.unwrap();
                    match s.add_member(&Context::tenant(), g, &m).await {
                        Ok(()) | Err(StoreError::GroupNotFound) => {}
                        Err(e) => panic!("{e}"),
                    }
                })
            })
            .collect();
        s.deprovision_group(&Context::tenant(), g).await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        // Any add that got in before the deprovision was removed by it; any after found no
        // group. Either way nothing of `g` is left.
        let dump = s.dump().await;
        let g_hex = hex::encode(g.as_uuid().as_bytes());
        assert!(table(&dump, "memberships").iter().all(|r| !r[1].contains(&g_hex)));
        for i in 0..16 {
            assert_eq!(s.groups_of(&subject(&format!("j{i}")), None).await.unwrap(), vec![other]);
        }
    }
    async fn adds_by_address_are_idempotent_and_leave_the_same_rows_inv_3(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g, h) = (group(s, "g").await, group(s, "h").await);
        let erin = by_email("erin@corp.example");
        s.add_member(&Context::tenant(), g, &erin).await.unwrap();
        let once = s.dump().await;
        s.add_member(&Context::tenant(), g, &erin).await.unwrap();
        let twice = s.dump().await;
        assert_eq!(shape(&once), shape(&twice));
        assert_eq!(table(&once, "memberships"), table(&twice, "memberships"), "the membership row is untouched");
        assert_eq!(table(&once, "identities"), table(&twice, "identities"), "nor is the identity row");
        // Known, not a member of h: one more membership row, no new identity.
        s.add_member(&Context::tenant(), h, &erin).await.unwrap();
        let dump = s.dump().await;
        assert_eq!(table(&dump, "identities").len(), 1);
        assert_eq!(table(&dump, "memberships").len(), 2);

        // Removal by address: the same whether a member, no longer one, or unknown.
        s.remove_member(&Context::tenant(), g, &who_email("erin@corp.example")).await.unwrap();
        s.remove_member(&Context::tenant(), g, &who_email("ERIN@corp.example")).await.unwrap();
        s.remove_member(&Context::tenant(), g, &who_email("stranger@corp.example")).await.unwrap();
        let dump = s.dump().await;
        assert_eq!(table(&dump, "memberships").len(), 1);
        assert_eq!(table(&dump, "identities").len(), 1, "removal never creates identities");
    }

    async fn the_label_decides_before_anything_is_written(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let g = group(s, "confidential").await;
        let confidential = |mut add: AddMember| {
            add.label = label("Confidential");
            add
        };
        let before = s.dump().await;
        // Inferred guest: an address outside the corporate domains, added by an owner.
        let err = s.add_member(&Context::tenant(), g, &confidential(by_email("vendor@partner.example"))).await.unwrap_err();
        assert!(matches!(err, StoreError::LabelRefused(domain::EntryRefusal::GuestsNotAllowed(_))), "{err}");
        // The IdP's word: an agent.
        let mut bot = member("bot", "bot@corp.example");
        bot.member.kind = Some(IdentityKind::Agent);
        let err = s.add_member(&Context::tenant(), g, &confidential(bot.clone())).await.unwrap_err();
        assert!(matches!(err, StoreError::LabelRefused(domain::EntryRefusal::AgentsNotAllowed(_))), "{err}");
        assert_eq!(s.dump().await, before, "nothing written");

        // A stored kind wins over inference: Gus, a guest by the IdP's word, stays a guest when
        // an owner adds him by his address in a corporate domain. A corporate address nobody
        // vouched for is a member.
        let general = group(s, "general").await;
        let mut gus = member("gus", "gus@corp.example");
        gus.member.kind = Some(IdentityKind::Guest);
        s.add_member(&Context::tenant(), general, &gus).await.unwrap();
        let before = s.dump().await;
        let err = s.add_member(&Context::tenant(), g, &confidential(by_email("gus@corp.example"))).await.unwrap_err();
        assert!(matches!(err, StoreError::LabelRefused(_)), "{err}");
        assert_eq!(s.dump().await, before, "an existing identity is not touched either");
        s.add_member(&Context::tenant(), g, &confidential(by_email("colleague@corp.example"))).await.unwrap();
        assert_eq!(s.member_count(g).await.unwrap(), CountBucket::Under10);

        // Nobody named at all.
        let nobody = AddMember { member: MemberRef::default(), label: label("General") };
        assert!(matches!(s.add_member(&Context::tenant(), g, &nobody).await, Err(StoreError::Unidentified(_))));
        assert!(matches!(s.remove_member(&Context::tenant(), g, &IdentityRef::default()).await, Err(StoreError::Unidentified(_))));
        assert!(matches!(s.offboard(&Context::tenant(), &IdentityRef::default()).await, Err(StoreError::Unidentified(_))));
    }

    async fn an_identity_added_by_address_is_bound_when_the_person_signs_in(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2) = (group(s, "one").await, group(s, "two").await);
        s.add_member(&Context::tenant(), g1, &by_email("New.Hire@corp.example")).await.unwrap();
        assert!(s.groups_of(&subject("new-hire"), None).await.unwrap().is_empty(), "not bound yet");
        // An owner naming a subject beside the address binds nothing: only the person's token may.
        let mut claimed = by_email("new.hire@corp.example");
        claimed.member.subject = Some(subject("someone-else"));
        s.add_member(&Context::tenant(), g1, &claimed).await.unwrap();
        assert!(s.groups_of(&subject("someone-else"), None).await.unwrap().is_empty());

        s.add_member(&Context::tenant(), g2, &member("new-hire", "new.hire@corp.example")).await.unwrap();
        assert_eq!(table(&s.dump().await, "identities").len(), 1, "the same identity");
        assert_eq!(s.groups_of(&subject("new-hire"), None).await.unwrap(), sorted(vec![g1, g2]));
        assert!(s.is_member(g1, &subject("new-hire"), None).await.unwrap());
        // From now on the address and the subject name the same person.
        s.remove_member(&Context::tenant(), g1, &who_email("new.hire@corp.example")).await.unwrap();
        assert_eq!(s.groups_of(&subject("new-hire"), None).await.unwrap(), vec![g2]);
    }

    async fn someone_added_by_address_is_found_by_their_tokens_subject_and_address(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2, g3) = (group(s, "one").await, group(s, "two").await, group(s, "three").await);
        let fay = subject("fay");
        let mail = Email::parse("fay@corp.example").unwrap();
        let other = Email::parse("other@corp.example").unwrap();
        let leave = IdentityRef { subject: Some(fay.clone()), email: Some(mail.clone()) };

        // An owner adds her by address only: an identity with no subject.
        s.add_member(&Context::tenant(), g1, &by_email("fay@corp.example")).await.unwrap();
        assert!(s.is_member(g1, &fay, Some(&mail)).await.unwrap(), "added by address, found by token");
        assert_eq!(s.groups_of(&fay, Some(&mail)).await.unwrap(), vec![g1]);
        assert!(!s.is_member(g1, &fay, Some(&other)).await.unwrap());
        assert!(s.groups_of(&fay, Some(&other)).await.unwrap().is_empty());
        assert!(!s.is_member(g1, &fay, None).await.unwrap());
        assert!(!s.is_member(g2, &fay, Some(&mail)).await.unwrap());

        // She is known by subject too (with another address): the union, each group once.
        s.add_member(&Context::tenant(), g2, &member("fay", "fay.old@corp.example")).await.unwrap();
        s.add_member(&Context::tenant(), g3, &member("fay", "fay.old@corp.example")).await.unwrap();
        s.add_member(&Context::tenant(), g3, &by_email("fay@corp.example")).await.unwrap();
        assert_eq!(table(&s.dump().await, "identities").len(), 2, "nothing bound by reading");
        assert_eq!(s.groups_of(&fay, Some(&mail)).await.unwrap(), sorted(vec![g1, g2, g3]));
        assert_eq!(s.groups_of(&fay, None).await.unwrap(), sorted(vec![g2, g3]));
        assert!(s.is_member(g1, &fay, Some(&mail)).await.unwrap());
        assert!(s.is_member(g2, &fay, Some(&mail)).await.unwrap());

        // An identity bound to another subject is never hers, whatever address she shows.
        s.add_member(&Context::tenant(), g1, &member("gus", "gus@corp.example")).await.unwrap();
        let gus_mail = Email::parse("gus@corp.example").unwrap();
        assert!(!s.is_member(g1, &subject("nobody"), Some(&gus_mail)).await.unwrap());
        assert!(s.groups_of(&subject("nobody"), Some(&gus_mail)).await.unwrap().is_empty());
        assert_eq!(s.groups_of(&fay, Some(&gus_mail)).await.unwrap(), sorted(vec![g2, g3]));
        let claim = IdentityRef { subject: Some(subject("nobody")), email: Some(gus_mail.clone()) };
        s.remove_member(&Context::tenant(), g1, &claim).await.unwrap();
        let fay_claims = IdentityRef { subject: Some(fay.clone()), email: Some(gus_mail) };
        s.remove_member(&Context::tenant(), g1, &fay_claims).await.unwrap();
        assert!(s.is_member(g1, &subject("gus"), None).await.unwrap(), "gus keeps his membership");

        // Leaving with her token's subject and address: the membership goes from whichever of
        // her identities holds it, and from both at once.
        s.remove_member(&Context::tenant(), g1, &leave).await.unwrap();
        assert!(!s.is_member(g1, &fay, Some(&mail)).await.unwrap());
        s.remove_member(&Context::tenant(), g3, &leave).await.unwrap();
        assert!(!s.is_member(g3, &fay, Some(&mail)).await.unwrap());
        s.remove_member(&Context::tenant(), g2, &leave).await.unwrap();
        assert!(s.groups_of(&fay, Some(&mail)).await.unwrap().is_empty());
        s.remove_member(&Context::tenant(), g2, &leave).await.unwrap();
        // Only gus's membership is left.
        assert_eq!(table(&s.dump().await, "memberships").len(), 1);
    }

    async fn an_address_identity_of_someone_known_by_subject_merges_into_theirs(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2, g3) = (group(s, "one").await, group(s, "two").await, group(s, "three").await);
        // Alice is known by subject with an old address; an owner adds her new address.
        s.add_member(&Context::tenant(), g1, &member("alice", "alice.old@corp.example")).await.unwrap();
        s.add_member(&Context::tenant(), g2, &by_email("alice@corp.example")).await.unwrap();
        assert_eq!(table(&s.dump().await, "identities").len(), 2);
        // She joins with a token carrying both: one identity, every membership hers.
        s.add_member(&Context::tenant(), g3, &member("alice", "alice@corp.example")).await.unwrap();
        let dump = s.dump().await;
        assert_eq!(table(&dump, "identities").len(), 1);
        assert_eq!(table(&dump, "memberships").len(), 3);
        assert_eq!(s.groups_of(&subject("alice"), None).await.unwrap(), sorted(vec![g1, g2, g3]));
        // Her new address finds her; the old one no longer does.
        s.add_member(&Context::tenant(), g1, &by_email("alice@corp.example")).await.unwrap();
        assert_eq!(table(&s.dump().await, "memberships").len(), 3);
        s.add_member(&Context::tenant(), g1, &by_email("alice.old@corp.example")).await.unwrap();
        assert_eq!(table(&s.dump().await, "identities").len(), 2, "the old address is someone new");
    }

    async fn an_address_given_to_someone_else_moves_to_them(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2, g3) = (group(s, "one").await, group(s, "two").await, group(s, "three").await);
        s.add_member(&Context::tenant(), g1, &member("former", "desk@corp.example")).await.unwrap();
        s.add_member(&Context::tenant(), g2, &member("successor", "desk@corp.example")).await.unwrap();
        assert_eq!(table(&s.dump().await, "identities").len(), 2);
        assert_eq!(s.groups_of(&subject("former"), None).await.unwrap(), vec![g1], "keeps their memberships");
        s.add_member(&Context::tenant(), g3, &by_email("desk@corp.example")).await.unwrap();
        assert!(s.is_member(g3, &subject("successor"), None).await.unwrap());
        assert!(!s.is_member(g3, &subject("former"), None).await.unwrap());
    }

    async fn offboarding_removes_every_membership_and_the_identity(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2, g3) = (group(s, "one").await, group(s, "two").await, group(s, "three").await);
        let alice = member("alice", "alice@corp.example");
        for g in [g1, g2, g3] {
            s.add_member(&Context::tenant(), g, &alice).await.unwrap();
        }
        s.add_member(&Context::tenant(), g1, &member("bob", "bob@corp.example")).await.unwrap();
        let old_ids = table(&s.dump().await, "identities")
            .iter()
            .map(|r| r[0].clone())
            .collect::<Vec<_>>();

        s.offboard(&Context::tenant(), &alice.who()).await.unwrap();
        s.offboard(&Context::tenant(), &alice.who()).await.unwrap();
        s.offboard(&Context::tenant(), &who("never-seen")).await.unwrap();
        s.offboard(&Context::tenant(), &who_email("never@corp.example")).await.unwrap();
        let dump = s.dump().await;
        assert_eq!(table(&dump, "identities").len(), 1, "only bob is left");
        assert_eq!(table(&dump, "memberships").len(), 1, "mail expands from these rows: alice gets none");
        assert!(s.groups_of(&subject("alice"), None).await.unwrap().is_empty());
        for g in [g1, g2, g3] {
            assert!(!s.is_member(g, &subject("alice"), None).await.unwrap());
        }
        assert!(s.is_member(g1, &subject("bob"), None).await.unwrap());

        // A later add creates a fresh identity.
        s.add_member(&Context::tenant(), g2, &alice).await.unwrap();
        let ids: Vec<String> = table(&s.dump().await, "identities").iter().map(|r| r[0].clone()).collect();
        assert_eq!(ids.iter().filter(|id| !old_ids.contains(id)).count(), 1, "alice's is new");
        assert_eq!(s.groups_of(&subject("alice"), None).await.unwrap(), vec![g2]);

        // Offboarding by subject and address takes the address identity of the same person too.
        s.add_member(&Context::tenant(), g1, &member("dan", "dan.old@corp.example")).await.unwrap();
        s.add_member(&Context::tenant(), g3, &by_email("dan@corp.example")).await.unwrap();
        let dan = IdentityRef { subject: Some(subject("dan")), email: Some(Email::parse("dan@corp.example").unwrap()) };
        s.offboard(&Context::tenant(), &dan).await.unwrap();
        s.add_member(&Context::tenant(), g3, &by_email("dan@corp.example")).await.unwrap();
        assert_eq!(s.member_count(g3).await.unwrap(), CountBucket::Under10);
        let dump = s.dump().await;
        // bob, alice, and the fresh identity made by the last add.
        assert_eq!(table(&dump, "identities").len(), 3);
        assert_eq!(table(&dump, "memberships").len(), 3);
    }

    async fn reseal_moves_everything_to_the_active_key_so_the_old_one_can_go(db, keys, key_text) {
        let s = db.store.as_ref();
        let (g1, g2, g3) = (group(s, "one").await, group(s, "two").await, group(s, "three").await);
        let alice = member("alice", "alice@corp.example");
        s.add_member(&Context::tenant(), g1, &alice).await.unwrap();
        s.add_member(&Context::tenant(), g2, &alice).await.unwrap();
        s.add_member(&Context::tenant(), g1, &by_email("eve@partner.example")).await.unwrap();
        s.add_member(&Context::tenant(), g2, &member("bob", "bob@corp.example")).await.unwrap();
        s.remove_member(&Context::tenant(), g2, &who("bob")).await.unwrap();
        let k1 = keys.active().id().to_string();

        // k2 first (active), k1 kept for reading.
        let k2_text = SealKeys::generate_text();
        let k2 = rotated_kid(&k2_text);
        let rotated = db.reopen(keys_from(&format!("{},{}", k2_text.as_str(), key_text))).await;
        // A live write before the re-seal moves part of the data, as a re-seal that stopped
        // half-way would have: the re-seal must cope with a mix.
        rotated.add_member(&Context::tenant(), g3, &alice).await.unwrap();
        let report = rotated.reseal(&Context::tenant(), 2).await.unwrap();
        assert_eq!(report, ResealReport { identities: 2, memberships: 3 }, "eve, bob; alice in g1 and g2, eve in g1");
        assert_eq!(rotated.reseal(&Context::tenant(), 2).await.unwrap(), ResealReport::default(), "nothing left to do");

        // k1 dropped.
        let only_k2 = db.reopen(keys_from(&k2_text)).await;
        let dump = only_k2.dump().await;
        for r in table(&dump, "identities") {
            assert_eq!(r[3], k2);
        }
        for r in table(&dump, "memberships") {
            assert_eq!(r[3], k2);
        }
        assert!(cells(&dump).iter().all(|(_, c)| c != &k1.to_lowercase()), "no row names k1");

        let s = only_k2.as_ref();
        assert!(s.is_member(g1, &alice.subject(), None).await.unwrap());
        assert_eq!(s.groups_of(&alice.subject(), None).await.unwrap(), sorted(vec![g1, g2, g3]));
        assert!(s.groups_of(&subject("bob"), None).await.unwrap().is_empty());
        // Adds stay idempotent (the same rows, found by their re-made tags), by subject and
        // by address alike, and removal still finds them.
        s.add_member(&Context::tenant(), g1, &alice).await.unwrap();
        s.add_member(&Context::tenant(), g1, &by_email("alice@corp.example")).await.unwrap();
        s.add_member(&Context::tenant(), g1, &by_email("eve@partner.example")).await.unwrap();
        let dump = s.dump().await;
        assert_eq!(table(&dump, "identities").len(), 3);
        assert_eq!(table(&dump, "memberships").len(), 4);
        s.remove_member(&Context::tenant(), g2, &alice.who()).await.unwrap();
        s.remove_member(&Context::tenant(), g2, &alice.who()).await.unwrap();
        s.remove_member(&Context::tenant(), g1, &who_email("eve@partner.example")).await.unwrap();
        assert_eq!(s.groups_of(&alice.subject(), None).await.unwrap(), sorted(vec![g1, g3]));
        assert_eq!(table(&s.dump().await, "memberships").len(), 2);
        // Eve signs in: bound to the identity made from her address.
        let mut eve = member("eve", "eve@partner.example");
        eve.member.kind = Some(IdentityKind::Guest);
        s.add_member(&Context::tenant(), g2, &eve).await.unwrap();
        assert_eq!(table(&s.dump().await, "identities").len(), 3);
    }

    async fn reseal_gives_rows_of_the_first_schema_their_address_tag(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2) = (group(s, "one").await, group(s, "two").await);
        s.add_member(&Context::tenant(), g1, &member("alice", "alice@corp.example")).await.unwrap();
        s.add_member(&Context::tenant(), g1, &member("alias", "shared@corp.example")).await.unwrap();
        s.add_member(&Context::tenant(), g1, &member("other", "shared2@corp.example")).await.unwrap();
        // As written before addresses were tagged.
        db.raw.execute("UPDATE identities SET email_tag = NULL").await.unwrap();
        assert_eq!(s.reseal(&Context::tenant(), 500).await.unwrap(), ResealReport { identities: 3, memberships: 0 });
        s.add_member(&Context::tenant(), g2, &by_email("alice@corp.example")).await.unwrap();
        assert_eq!(table(&s.dump().await, "identities").len(), 3, "found by address again");
        assert_eq!(s.groups_of(&subject("alice"), None).await.unwrap(), sorted(vec![g1, g2]));
    }

    async fn a_kind_the_persons_token_reveals_ends_the_memberships_its_labels_bar(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let conf = labelled_group(s, "conf", "Confidential").await;
        let general = labelled_group(s, "general", "General").await;
        // An owner adds a corporate address to both: inferred an employee, admitted.
        let mut add = by_email("newhire@corp.example");
        add.label = label("Confidential");
        s.add_member(&Context::tenant(), conf, &add).await.unwrap();
        s.add_member(&Context::tenant(), general, &by_email("newhire@corp.example")).await.unwrap();
        let (nh, address) = (subject("nh"), Email::parse("newhire@corp.example").unwrap());
        assert!(s.is_member(conf, &nh, Some(&address)).await.unwrap());

        // The person signs in: the token says guest. Confidential bars guests: that membership
        // ends at once; General admits guests: that one stays.
        assert!(s.settle_kind(&Context::tenant(), &nh, Some(&address), IdentityKind::Guest).await.unwrap());
        assert!(!s.is_member(conf, &nh, Some(&address)).await.unwrap());
        assert!(s.is_member(general, &nh, Some(&address)).await.unwrap());
        assert_eq!(s.groups_of(&nh, Some(&address)).await.unwrap(), vec![general]);
        // The same word again changes nothing.
        assert!(!s.settle_kind(&Context::tenant(), &nh, Some(&address), IdentityKind::Guest).await.unwrap());
        // And the next owner add uses the stored kind: refused.
        assert!(matches!(s.add_member(&Context::tenant(), conf, &add).await, Err(StoreError::LabelRefused(_))));

        // Someone nobody knows: nothing to settle, nothing written.
        let before = s.dump().await;
        assert!(!s.settle_kind(&Context::tenant(), &subject("stranger"), None, IdentityKind::Agent).await.unwrap());
        assert_eq!(s.dump().await, before);
    }

    async fn the_rule_the_tenant_keeps_binds_even_when_the_caller_sends_an_older_looser_label(db, _keys, _key_text) {
        let s = db.store.as_ref();
        // Confidential bars guests, and the tenant keeps that rule for the group…
        let conf = labelled_group(s, "conf", "Confidential").await;
        // …so a guest's join sent with a looser label (a lookup from before a tightening) is
        // refused, and writes nothing.
        let before = s.dump().await;
        let mut guest = member("gus", "gus@partner.example");
        guest.member.kind = Some(IdentityKind::Guest);
        guest.label = label("General");
        let err = s.add_member(&Context::tenant(), conf, &guest).await.unwrap_err();
        assert!(matches!(err, StoreError::LabelRefused(domain::EntryRefusal::GuestsNotAllowed(ref l)) if l.as_str() == "Confidential"), "{err}");
        assert_eq!(s.dump().await, before);
        // An employee sent the same way is admitted.
        let mut employee = member("emma", "emma@corp.example");
        employee.label = label("General");
        s.add_member(&Context::tenant(), conf, &employee).await.unwrap();
    }

    async fn a_self_join_that_reveals_another_kind_ends_the_barred_memberships(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let conf = labelled_group(s, "conf", "Confidential").await;
        let general = labelled_group(s, "general", "General").await;
        let mut add = by_email("bot@corp.example");
        add.label = label("Confidential");
        s.add_member(&Context::tenant(), conf, &add).await.unwrap();
        // The same address signs in with a token that says agent, and joins General (which bars
        // agents too, so that join is refused and changes nothing)…
        let mut bot = member("bot", "bot@corp.example");
        bot.member.kind = Some(IdentityKind::Agent);
        assert!(matches!(s.add_member(&Context::tenant(), general, &bot).await, Err(StoreError::LabelRefused(_))));
        assert!(s.is_member(conf, &subject("bot"), Some(&Email::parse("bot@corp.example").unwrap())).await.unwrap());
        // …then joins a group whose label admits agents: bound, its kind corrected, and the
        // Confidential membership ends in the same transaction.
        let open = labelled_group(s, "agents", "Agents Welcome").await;
        let mut join = bot.clone();
        join.label = agents_welcome();
        s.add_member(&Context::tenant(), open, &join).await.unwrap();
        assert_eq!(s.groups_of(&subject("bot"), None).await.unwrap(), vec![open]);
    }

    async fn tightening_a_label_ends_the_memberships_it_now_bars(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2) = (labelled_group(s, "one", "General").await, labelled_group(s, "two", "General").await);
        s.add_member(&Context::tenant(), g1, &by_email("vendor@partner.example")).await.unwrap();
        s.add_member(&Context::tenant(), g2, &by_email("vendor@partner.example")).await.unwrap();
        s.add_member(&Context::tenant(), g1, &member("alice", "alice@corp.example")).await.unwrap();
        let vendor = IdentityRef { subject: None, email: Some(Email::parse("vendor@partner.example").unwrap()) };
        let mut tight = EntryRule::of(&label("General").name, &label("General").policy);
        tight.guests_allowed = false;
        // Loosening first: nothing ends.
        let mut loose = tight.clone();
        loose.guests_allowed = true;
        loose.agents_allowed = true;
        let applied = s.apply_rule(&Context::tenant(), &ApplyRule { rule: loose, groups: vec![] }).await.unwrap();
        assert_eq!(applied.groups, 2);
        assert_eq!(s.member_count(g1).await.unwrap(), CountBucket::Under10);
        let before = s.dump().await;
        assert_eq!(table(&before, "memberships").len(), 3);

        let applied = s.apply_rule(&Context::tenant(), &ApplyRule { rule: tight.clone(), groups: vec![g1] }).await.unwrap();
        assert_eq!((applied.groups, applied.ended), (2, CountBucket::Under10));
        let after = s.dump().await;
        assert_eq!(table(&after, "memberships").len(), 1, "the guest's two memberships ended, alice's stayed");
        assert!(s.is_member(g1, &subject("alice"), None).await.unwrap());
        // A later add by address finds them, a guest, and the label refuses.
        let mut again = by_email("vendor@partner.example");
        again.label.policy.guests_allowed = false;
        assert!(matches!(s.add_member(&Context::tenant(), g1, &again).await, Err(StoreError::LabelRefused(_))));
        s.remove_member(&Context::tenant(), g1, &vendor).await.unwrap();
        // Applying the same rule again changes nothing.
        let applied = s.apply_rule(&Context::tenant(), &ApplyRule { rule: tight, groups: vec![g1, g2, GroupId::new()] }).await.unwrap();
        assert_eq!(applied.groups, 2, "a group the tenant does not have is skipped");
        assert_eq!(shape(&s.dump().await), shape(&after));
    }

    async fn offboarding_voids_the_tokens_issued_before_it(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let g = group(s, "one").await;
        s.add_member(&Context::tenant(), g, &member("carol", "carol@corp.example")).await.unwrap();
        let now = service_kit::db::now_ms() / 1000;
        assert!(!s.token_revoked(&subject("carol"), Some(now - 60)).await.unwrap(), "never offboarded");
        assert!(!s.token_revoked(&subject("carol"), None).await.unwrap());
        s.offboard(&Context::tenant(), &who("carol")).await.unwrap();
        assert!(s.token_revoked(&subject("carol"), Some(now - 60)).await.unwrap());
        assert!(s.token_revoked(&subject("carol"), None).await.unwrap(), "no issue time: void");
        assert!(!s.token_revoked(&subject("carol"), Some(now + 5)).await.unwrap(), "issued after");
        assert!(!s.token_revoked(&subject("dave"), Some(now - 60)).await.unwrap(), "nobody else");
        // Someone the tenant never saw, offboarded by subject: void too. By address, the
        // subject of the identity holding it.
        s.offboard(&Context::tenant(), &who("stranger")).await.unwrap();
        assert!(s.token_revoked(&subject("stranger"), Some(now - 60)).await.unwrap());
        s.add_member(&Context::tenant(), g, &member("erin", "erin@corp.example")).await.unwrap();
        s.offboard(&Context::tenant(), &who_email("erin@corp.example")).await.unwrap();
        assert!(s.token_revoked(&subject("erin"), Some(now - 60)).await.unwrap());
        // The record names nobody: a tag and a time.
        let dump = s.dump().await;
        assert!(cells(&dump).iter().all(|(_, c)| !c.contains("carol") && !c.contains(&hex_of("carol"))));
        assert_eq!(table(&dump, "revocations").len(), 3);
    }

    async fn provisioning_with_a_stricter_rule_ends_what_it_bars(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let id = GroupId::new();
        let mut req = request(id, "relabelled");
        s.provision_group(&Context::tenant(), &req).await.unwrap();
        s.add_member(&Context::tenant(), id, &by_email("vendor@partner.example")).await.unwrap();
        s.add_member(&Context::tenant(), id, &member("alice", "alice@corp.example")).await.unwrap();
        req.label = Some(EntryRule::of(&label("Confidential").name, &label("Confidential").policy));
        s.provision_group(&Context::tenant(), &req).await.unwrap();
        assert_eq!(table(&s.dump().await, "memberships").len(), 1);
        assert!(s.is_member(id, &subject("alice"), None).await.unwrap());
    }

}

/// A group provisioned with the entry rule of the default label `name` (or of "Agents
/// Welcome", a label that admits everyone).
async fn labelled_group(store: &dyn Store, local: &str, name: &str) -> GroupId {
    let id = GroupId::new();
    let mut req = request(id, local);
    let l = if name == "Agents Welcome" {
        agents_welcome()
    } else {
        label(name)
    };
    req.label = Some(EntryRule::of(&l.name, &l.policy));
    store
        .provision_group(&Context::tenant(), &req)
        .await
        .unwrap();
    id
}

/// A label admitting guests and AI agents.
fn agents_welcome() -> Label {
    let mut l = label("General");
    l.name = domain::LabelName::parse("Agents Welcome").unwrap();
    l.policy.agents_allowed = true;
    l
}

/// Each row's table, the table's size, and the lengths of its cells: what stays the same when
/// only nonces change.
fn shape(d: &[(String, Vec<Vec<String>>)]) -> Vec<(String, usize, Vec<usize>)> {
    d.iter()
        .flat_map(|(t, rows)| {
            rows.iter()
                .map(move |r| (t.clone(), rows.len(), r.iter().map(String::len).collect()))
        })
        .collect()
}

fn sorted(mut groups: Vec<GroupId>) -> Vec<GroupId> {
    groups.sort();
    groups
}

fn rotated_kid(text: &str) -> String {
    text.split(':').next().unwrap().to_string()
}

/// A database of the first schema (0001: every identity has a subject tag, none an address
/// tag), as the tenant wrote it before addresses could stand alone, upgraded in place: nobody
/// is lost, and a re-seal makes the people in it findable by address.
macro_rules! first_schema_upgrade {
    ($(#[$attr:meta])* $name:ident, $store:ident, $migrations:expr, $open:expr) => {
        #[tokio::test]
        $(#[$attr])*
        async fn $name() {
            let (keys, _) = fresh_keys();
            let (pool, database) = $open.await;
            let first = sqlx::migrate::Migrator {
                migrations: std::borrow::Cow::Owned($migrations.migrations[..1].to_vec()),
                ..sqlx::migrate::Migrator::DEFAULT
            };
            first.run(&pool).await.unwrap();

            // What the first tenant wrote for alice, a member of one group.
            let key = keys.active();
            let (g, id) = (GroupId::new(), Uuid::new_v4());
            let alice = Profile {
                subject: Some(subject("alice")),
                email: Some(Email::parse("alice@corp.example").unwrap()),
                kind: IdentityKind::Member,
            };
            sqlx::query("INSERT INTO distribution_groups (group_id, address, display_name) VALUES ($1, $2, $3)")
                .bind(g.as_uuid())
                .bind("legacy@groups.test.example")
                .bind("Legacy")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO identities (id, subject_tag, sealed_profile, sealed_groups, key_id) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(key.subject_tag(&subject("alice")))
            .bind(key.seal_profile(id, &alice))
            // The first schema's sealed list of groups; the column is gone since (0011).
            .bind(vec![0_u8; 88])
            .bind(key.id())
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO memberships (member_tag, group_id, sealed_identity, key_id) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(key.member_tag(g, id))
            .bind(g.as_uuid())
            .bind(key.seal_member(g, id))
            .bind(key.id())
            .execute(&pool)
            .await
            .unwrap();

            let store = $store::migrate(pool, keys.clone()).await.unwrap();
            let db = TestDb {
                store: Arc::new(store.clone()),
                raw: Raw::$store(store),
                database,
            };
            let s = db.store.as_ref();
            assert!(s.is_member(g, &subject("alice"), None).await.unwrap());
            assert_eq!(s.groups_of(&subject("alice"), None).await.unwrap(), vec![g]);
            let dump = s.dump().await;
            assert_eq!(table(&dump, "identities")[0][6], "", "no address tag yet");
            // The row written with the group's clear id now holds its keyed reference.
            let group_column = &table(&dump, "memberships")[0][1];
            assert!(!group_column.contains(&hex::encode(g.as_uuid().as_bytes())), "{group_column}");
            assert!(group_column.contains(&hex::encode(key.group_ref(g).as_bytes())), "{group_column}");

            assert_eq!(s.reseal(&Context::tenant(), 500).await.unwrap(), ResealReport { identities: 1, memberships: 0 });
            let h = group(s, "after").await;
            s.add_member(&Context::tenant(), h, &by_email("alice@corp.example")).await.unwrap();
            assert_eq!(table(&s.dump().await, "identities").len(), 1, "found by address");
            assert_eq!(s.groups_of(&subject("alice"), None).await.unwrap(), sorted(vec![g, h]));
            // The schema now takes identities known by address alone, and no identity known
            // by neither.
            let none = db
                .raw
                .execute("UPDATE identities SET subject_tag = NULL, email_tag = NULL")
                .await;
            assert!(none.is_err(), "an identity must stay findable");
            db.finish().await;
        }
    };
}

/// A raw SQLite pool on a fresh file, nothing migrated.
async fn raw_sqlite() -> (sqlx::SqlitePool, TestDatabase) {
    let database = TestDatabase::sqlite();
    let pool = db::connect_sqlite(database.url(), 4).await.unwrap();
    (pool, database)
}

/// A raw Postgres pool on a fresh database, nothing migrated.
async fn raw_postgres() -> (sqlx::PgPool, TestDatabase) {
    let database = TestDatabase::postgres().await;
    let pool = db::connect_postgres(database.url(), 4).await.unwrap();
    (pool, database)
}

first_schema_upgrade!(
    sqlite_database_of_the_first_schema_upgrades_in_place,
    SqliteStore,
    SQLITE_MIGRATIONS,
    raw_sqlite()
);
first_schema_upgrade!(
    #[ignore = "needs HUSH_TEST_POSTGRES_URL"]
    postgres_database_of_the_first_schema_upgrades_in_place,
    PgStore,
    PG_MIGRATIONS,
    raw_postgres()
);

/// The SQL statements run on this thread while a future runs, read from the events sqlx emits
/// (target `sqlx::query`). On Postgres a statement runs in the task that awaits it, so a
/// thread-local subscriber sees exactly the store's own statements; SQLite runs them on a
/// worker thread, so this is a Postgres-only witness.
mod statements {
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt as _};
    use tracing_subscriber::Layer;

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    #[derive(Default)]
    struct Fields {
        summary: String,
        statement: String,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            match field.name() {
                "summary" => self.summary = value.to_string(),
                "db.statement" => self.statement = value.to_string(),
                _ => {}
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.record_str(field, &format!("{value:?}"));
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Log {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if event.metadata().target() != "sqlx::query" {
                return;
            }
            let mut fields = Fields::default();
            event.record(&mut fields);
            let sql = match fields.statement.trim() {
                "" => fields.summary,
                full => full.to_string(),
            };
            self.0.lock().unwrap().push(sql);
        }
    }

    /// Runs `fut` and answers its output and the statements it ran, in order.
    pub async fn recorded<F: Future>(fut: F) -> (F::Output, Vec<String>) {
        let log = Log::default();
        let guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(log.clone()));
        let out = fut.await;
        drop(guard);
        let statements = log.0.lock().unwrap().clone();
        (out, statements)
    }
}

/// INV-3, statement by statement: an add runs the very same SQL whether the person is a
/// stranger, known but not a member, or a member; a removal whether they are a member, no
/// longer one, or a stranger; by subject and by address alike.
#[tokio::test]
#[ignore = "needs HUSH_TEST_POSTGRES_URL"]
async fn writes_run_the_same_statements_whether_or_not_a_member_inv_3() {
    use statements::recorded;
    let (keys, key_text) = fresh_keys();
    let db = TestDb::postgres(keys).await;
    let (g, h) = (
        group(db.store.as_ref(), "g").await,
        group(db.store.as_ref(), "h").await,
    );
    // Once with one key, once mid-rotation (a retired key adds its own statements).
    let rotated = TestDb::postgres_logging_statements(
        &db.database,
        keys_from(&format!(
            "{},{key_text}",
            SealKeys::generate_text().as_str()
        )),
    )
    .await;
    let runs = [
        (
            TestDb::postgres_logging_statements(&db.database, keys_from(&key_text)).await,
            member("alice", "alice@corp.example"),
            by_email("erin@corp.example"),
        ),
        (
            rotated,
            member("bob", "bob@corp.example"),
            by_email("fay@corp.example"),
        ),
    ];
    let mut leaves = Vec::new();
    for (store, by_token, by_address) in runs {
        let s = store.as_ref();
        // Warm the pool so no connection is opened (with its own statements) while recording.
        for _ in 0..3 {
            s.is_member(g, &subject("warm-up"), None).await.unwrap();
        }

        for person in [by_token, by_address] {
            let (r, stranger) = recorded(s.add_member(&Context::tenant(), g, &person)).await;
            r.unwrap();
            let (r, known_not_member) =
                recorded(s.add_member(&Context::tenant(), h, &person)).await;
            r.unwrap();
            let (r, member_already) = recorded(s.add_member(&Context::tenant(), h, &person)).await;
            r.unwrap();
            assert!(stranger.len() >= 4, "{stranger:#?}");
            assert_eq!(stranger, known_not_member);
            assert_eq!(stranger, member_already);

            let who = IdentityRef::from(&person.member);
            let never = IdentityRef {
                subject: person
                    .member
                    .subject
                    .as_ref()
                    .map(|_| subject("never-seen")),
                email: person
                    .member
                    .email
                    .as_ref()
                    .map(|_| Email::parse("never@corp.example").unwrap()),
            };
            let (r, was_member) = recorded(s.remove_member(&Context::tenant(), h, &who)).await;
            r.unwrap();
            let (r, was_not) = recorded(s.remove_member(&Context::tenant(), h, &who)).await;
            r.unwrap();
            let (r, never_seen) = recorded(s.remove_member(&Context::tenant(), h, &never)).await;
            r.unwrap();
            assert!(was_member.len() >= 4, "{was_member:#?}");
            assert_eq!(was_member, was_not);
            assert_eq!(was_member, never_seen);

            // Leaving: the token's subject and address, whether the membership is held by the
            // subject's identity, by an identity made from the address, or by nobody.
            s.add_member(&Context::tenant(), h, &person).await.unwrap();
            let local = person
                .member
                .email
                .as_ref()
                .unwrap()
                .as_str()
                .split('@')
                .next()
                .unwrap()
                .to_string();
            let leave = IdentityRef {
                subject: Some(
                    person
                        .member
                        .subject
                        .clone()
                        .unwrap_or_else(|| subject(&local)),
                ),
                email: person.member.email.clone(),
            };
            let never = IdentityRef {
                subject: Some(subject("never-seen")),
                email: Some(Email::parse("never@corp.example").unwrap()),
            };
            let (r, was_member) = recorded(s.remove_member(&Context::tenant(), h, &leave)).await;
            r.unwrap();
            assert!(!s
                .is_member(h, leave.subject.as_ref().unwrap(), leave.email.as_ref())
                .await
                .unwrap());
            let (r, was_not) = recorded(s.remove_member(&Context::tenant(), h, &leave)).await;
            r.unwrap();
            let (r, never_seen) = recorded(s.remove_member(&Context::tenant(), h, &never)).await;
            r.unwrap();
            assert!(was_member.len() >= 4, "{was_member:#?}");
            assert_eq!(was_member, was_not);
            assert_eq!(was_member, never_seen);
            leaves.push(was_member);
        }
        assert_eq!(
            leaves[0], leaves[1],
            "by token or by address, a leave runs the same SQL"
        );
        leaves.clear();
    }
    db.finish().await;
}

// ---- Batches: set-based, and the same as the single calls ----

/// A small deterministic generator (no seed file, no dependency): the same ops every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

mod batches {
    use super::*;

    on_both_backends! {
        async fn a_batch_ends_where_the_same_ops_one_by_one_end(db, _keys, _key_text) {
            // Three groups for the batch and three twins for single calls; Confidential refuses
            // guests (addresses outside corp.example).
            let labels = ["General", "General", "Confidential"];
            let mut batch_groups = Vec::new();
            let mut single_groups = Vec::new();
            for (i, _) in labels.iter().enumerate() {
                batch_groups.push(group(db.store.as_ref(), &format!("batch-{i}")).await);
                single_groups.push(group(db.store.as_ref(), &format!("single-{i}")).await);
            }
            // 40 people, each named by subject, by address, or both, in 600 random ops.
            // Each side has its own people (the same names with a prefix), so neither side finds
        // identities the other created.
        let person = |side: &str, p: u64| {
            let domain = if p.is_multiple_of(5) { "partner.example" } else { "corp.example" };
            (
                subject(&format!("{side}-sub-{p}")),
                Email::parse(format!("{side}-p{p}@{domain}")).unwrap(),
            )
        };
        let mut rng = Lcg(42);
            let mut planned = Vec::new();
            for _ in 0..600 {
                let (p, g, add, naming) = (rng.below(40), rng.below(3) as usize, rng.below(3) > 0, rng.below(3));
                planned.push((p, g, add, naming));
            }
            // The same person first named by address and later by subject too, so both kinds
            // of identity and both lookups are exercised.
            let ops: Vec<tenant_api::BatchOp> = planned
                .iter()
                .map(|&(p, g, add, naming)| {
                    let (s, e) = person("b", p);
                    tenant_api::BatchOp {
                        op: if add { tenant_api::BatchOpKind::Add } else { tenant_api::BatchOpKind::Remove },
                        group_id: batch_groups[g],
                        subject: (naming != 1).then_some(s),
                        email: (naming != 0).then_some(e),
                    }
                })
                .collect();
            let batch = ApplyBatch {
                ops,
                labels: labels
                    .iter()
                    .zip(&batch_groups)
                    .map(|(l, g)| tenant_api::GroupLabel { group_id: *g, label: label(l) })
                    .collect(),
            };
            // Twice: the second round is a replay (a chunk retried after a crash), which must
            // also end where the same calls replayed one by one end.
            let mut events_so_far = 0;
            for round in 0..2 {
            let outcome = db.store.apply_batch(&Context::tenant(), &batch).await.unwrap();

            let (mut applied, mut refused, mut unknown) = (0, 0, 0);
            for &(p, g, add, naming) in &planned {
                let (s, e) = person("s", p);
                let who = IdentityRef { subject: (naming != 1).then_some(s), email: (naming != 0).then_some(e) };
                let result = if add {
                    let request = AddMember {
                        member: MemberRef { subject: who.subject.clone(), email: who.email.clone(), kind: None },
                        label: label(labels[g]),
                    };
                    db.store.add_member(&Context::tenant(), single_groups[g], &request).await
                } else {
                    db.store.remove_member(&Context::tenant(), single_groups[g], &who).await
                };
                match result {
                    Ok(()) => applied += 1,
                    // Named by subject alone and never seen: nobody knows the kind, and a
                    // batch reports such a person as an unknown identity.
                    Err(StoreError::LabelRefused(domain::EntryRefusal::KindUnknown(_))) => unknown += 1,
                    Err(StoreError::LabelRefused(_)) => refused += 1,
                    Err(e) => panic!("single call failed: {e}"),
                }
            }
            assert_eq!(
                (outcome.applied, outcome.label_refused, outcome.unknown_identity),
                (applied, refused, unknown)
            );
            // The audit chain has one event per applied operation on each side.
            let events = db.store.audit_db().events_after(0, 1_000_000).await.unwrap();
            let on = |groups: &[GroupId]| {
                events
                    .iter()
                    .filter(|e| e.action.starts_with("membership."))
                    .filter(|e| groups.iter().any(|g| e.group_id.as_deref() == Some(g.to_string().as_str())))
                    .count() as u64
            };
            assert_eq!(on(&batch_groups), on(&single_groups));
            events_so_far += outcome.applied;
            assert_eq!(on(&batch_groups), events_so_far);
            assert!(refused > 0, "the ops should include refusals");

            let mut members = 0;
            for p in 0..40 {
                let ((bs, be), (ss, se)) = (person("b", p), person("s", p));
                for g in 0..labels.len() {
                    let in_batch = db.store.is_member(batch_groups[g], &bs, Some(&be)).await.unwrap();
                    let in_single = db.store.is_member(single_groups[g], &ss, Some(&se)).await.unwrap();
                    assert_eq!(in_batch, in_single, "round {round}: person {p}, group {g}");
                    members += usize::from(in_batch);
                }
                let batch_side = db.store.groups_of(&bs, Some(&be)).await.unwrap().len();
                let single_side = db.store.groups_of(&ss, Some(&se)).await.unwrap().len();
                assert_eq!(batch_side, single_side, "person {p}'s group lists");
            }
            assert!(members > 10, "the ops should leave people in groups");
            for g in 0..labels.len() {
                assert_eq!(
                    db.store.member_count(batch_groups[g]).await.unwrap(),
                    db.store.member_count(single_groups[g]).await.unwrap()
                );
            }

            }
        }

        async fn a_batch_after_a_key_rotation_moves_its_rows_to_the_active_key(db, keys, key_text) {
            let g = group(db.store.as_ref(), "rotated").await;
            let ana = by_email("ana@corp.example");
            db.store.add_member(&Context::tenant(), g, &ana).await.unwrap();
            // A new active key in front of the old one.
            let new_text = SealKeys::generate_text();
            let store = db.reopen(keys_from(&format!("{},{key_text}", new_text.as_str()))).await;
            let active = rotated_kid(&new_text);
            let batch = ApplyBatch {
                ops: vec![tenant_api::BatchOp {
                    op: tenant_api::BatchOpKind::Add,
                    group_id: g,
                    subject: None,
                    email: ana.member.email.clone(),
                }],
                labels: vec![tenant_api::GroupLabel { group_id: g, label: label("General") }],
            };
            assert_eq!(store.apply_batch(&Context::tenant(), &batch).await.unwrap().applied, 1);
            let dump = store.dump().await;
            for table_name in ["identities", "memberships"] {
                let rows = table(&dump, table_name);
                assert_eq!(rows.len(), 1, "{table_name}: one row, not one per key");
                assert!(rows[0].contains(&active), "{table_name} is under the active key");
            }
            assert_eq!(store.member_count(g).await.unwrap(), CountBucket::of(1));
            let _ = keys;
        }
    }
}

/// On SQLite, a join that arrives while bulk batches queue for the single writer goes before
/// the batches that were waiting, not after them.
#[tokio::test]
async fn routine_writers_go_before_queued_bulk_batches() {
    let turns = Arc::new(Turns::default());
    let running = turns.take(Writer::Bulk).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let queued_batch = {
        let (turns, tx) = (turns.clone(), tx.clone());
        tokio::spawn(async move {
            let _t = turns.take(Writer::Bulk).await;
            tx.send("batch").unwrap();
        })
    };
    // The batch is in the queue before the join asks.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let join = {
        let (turns, tx) = (turns.clone(), tx.clone());
        tokio::spawn(async move {
            let _t = turns.take(Writer::Routine).await;
            tx.send("join").unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(running);
    join.await.unwrap();
    queued_batch.await.unwrap();
    assert_eq!(rx.recv().await, Some("join"));
    assert_eq!(rx.recv().await, Some("batch"));
}

mod bulk_lane {
    use super::*;

    on_both_backends! {
        async fn bulk_batches_own_pool_writes_the_same_database_over_connections_of_its_own(db, keys, key_text) {
            let g = group(db.store.as_ref(), "lane").await;
            let lane = db.store.with_own_pool(1);
            let email = Email::parse("lane-person@corp.example").unwrap();
            let outcome = lane
                .apply_batch(&Context::tenant(), &ApplyBatch::add_all(g, label("General"), std::slice::from_ref(&email)))
                .await
                .unwrap();
            assert_eq!(outcome.applied, 1);
            // The routine store sees what the lane wrote: one database, two pools.
            assert!(db.store.is_member(g, &subject("lane-person"), Some(&email)).await.unwrap());
            if let Raw::PgStore(s) = &db.raw {
                let pids: Vec<i32> = sqlx::query_scalar(
                    "SELECT pid FROM pg_stat_activity \
                     WHERE datname = current_database() AND application_name = 'hush-tenant-bulk'",
                )
                .fetch_all(s.pool())
                .await
                .unwrap();
                assert_eq!(pids.len(), 1, "the lane holds its own, named connection");
            }
        }
    }
}

/// A bulk batch on SQLite copies its pages from the write-ahead log into the database itself,
/// after its transaction: the join that waited for the batch must not then wait again, in its
/// own commit, for the copy of thousands of pages it never wrote.
#[tokio::test]
async fn on_sqlite_a_bulk_batch_leaves_the_log_copied_so_the_next_routine_commit_has_nothing_to_copy(
) {
    let (keys, _) = fresh_keys();
    let db = TestDb::sqlite(keys).await;
    let g = group(db.store.as_ref(), "checkpointed").await;
    let people: Vec<Email> = (0..1500)
        .map(|i| Email::parse(format!("logged-{i}@corp.example")).unwrap())
        .collect();
    let lane = db.store.with_own_pool(1);
    let outcome = lane
        .apply_batch(
            &Context::tenant(),
            &ApplyBatch::add_all(g, label("General"), &people),
        )
        .await
        .unwrap();
    assert_eq!(outcome.applied, 1500);
    let Raw::SqliteStore(s) = &db.raw else {
        unreachable!()
    };
    let (frames, copied) = wal_progress(s.pool().connect_options().get_filename());
    assert!(frames > 0, "the batch wrote through the log");
    assert_eq!(copied, frames, "every frame of the log is in the database");
    db.finish().await;
}

/// On SQLite, routine writes that wait for the writer at the same moment commit in one
/// transaction, each still answered for itself: a refused add among them is refused and writes
/// nothing, the others hold, and the audit chain links every event that held and no other.
#[tokio::test]
async fn on_sqlite_joins_at_once_commit_together_and_each_gets_its_own_answer() {
    let (keys, _) = fresh_keys();
    let db = TestDb::sqlite(keys).await;
    let g = labelled_group(db.store.as_ref(), "together", "Confidential").await;
    let Raw::SqliteStore(raw) = &db.raw else {
        unreachable!()
    };
    let before = raw.committed_together();
    // 48 adds at once: every fourth is a guest by address, whom Confidential bars.
    let adds: Vec<_> = (0..48)
        .map(|i| {
            let store = db.store.clone();
            let mut add = if i % 4 == 3 {
                by_email(&format!("guest-{i}@partner.example"))
            } else {
                member(&format!("staff-{i}"), &format!("staff-{i}@corp.example"))
            };
            add.label = label("Confidential");
            tokio::spawn(async move { store.add_member(&Context::tenant(), g, &add).await })
        })
        .collect();
    let mut refused = 0;
    for add in adds {
        match add.await.unwrap() {
            Ok(()) => {}
            Err(StoreError::LabelRefused(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused, 12);
    assert_eq!(db.store.member_count(g).await.unwrap(), CountBucket::of(36));
    let transactions = raw.committed_together() - before;
    assert!(
        (1..48).contains(&transactions),
        "48 writes in {transactions} shared transactions: some were committed together"
    );
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let report = crate::audit::verify::verify(&db.store.audit_db(), &[], &key)
        .await
        .unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    // The group's provisioning and the 36 adds that held; the refusals left no event.
    assert_eq!(report.events, 37);
    db.finish().await;
}

/// (frames in the write-ahead log, frames of it already copied into the database) of the
/// SQLite database `file`, read from its shared-memory index without taking part in it (a
/// checkpoint to ask would copy them): `mxFrame` of the index header and `nBackfill` of the
/// checkpoint record after its two copies, in the host's byte order (sqlite.org/walformat).
fn wal_progress(file: &std::path::Path) -> (u32, u32) {
    let mut shm = file.as_os_str().to_owned();
    shm.push("-shm");
    let bytes = std::fs::read(shm).unwrap();
    let word = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(96))
}

mod concurrent_batches {
    use super::*;

    on_both_backends! {
        async fn batches_running_at_once_that_create_the_same_people_both_apply_and_each_person_is_made_once(db, keys, key_text) {
            // Two chunks of a migration: different groups, the same 300 new people, in
            // opposite orders, applied at once.
            let (g1, g2) = (group(db.store.as_ref(), "first").await, group(db.store.as_ref(), "second").await);
            let people: Vec<Email> = (0..300)
                .map(|i| Email::parse(format!("overlap-{i}@corp.example")).unwrap())
                .collect();
            let mut reversed = people.clone();
            reversed.reverse();
            let one = ApplyBatch::add_all(g1, label("General"), &people);
            let two = ApplyBatch::add_all(g2, label("General"), &reversed);
            let (a, b) = (db.store.clone(), db.store.clone());
            let (first, second) = tokio::join!(
                tokio::spawn(async move { a.apply_batch(&Context::tenant(), &one).await }),
                tokio::spawn(async move { b.apply_batch(&Context::tenant(), &two).await }),
            );
            assert_eq!(first.unwrap().unwrap().applied, 300);
            assert_eq!(second.unwrap().unwrap().applied, 300);
            for (i, e) in people.iter().enumerate() {
                let who = subject(&format!("overlap-{i}"));
                assert_eq!(db.store.groups_of(&who, Some(e)).await.unwrap().len(), 2, "person {i} is in both groups, through one identity");
            }
            let identities = match &db.raw {
                Raw::SqliteStore(s) => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM identities").fetch_one(s.pool()).await.unwrap(),
                Raw::PgStore(s) => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM identities").fetch_one(s.pool()).await.unwrap(),
            };
            assert_eq!(identities, 300);
        }
    }
}

/// What someone who copies the database's log learns from a person's joins and leaves
/// (issue 16): the rows a write touches are in the log, transaction by transaction, so if a
/// join rewrote (or, on Postgres, locked) the person's identity row, the log would tie that
/// person to each group they joined. Each test reads the real log of a real database: the
/// write-ahead log file on SQLite, the WAL records (through `pg_walinspect`) on Postgres.
mod log_witness {
    use super::*;

    /// Alice, known to the tenant as a member of `g1`, then, while the log is watched: joins
    /// `g2` with her token, is added to `g3` by an owner by address, leaves `g1`, and is added
    /// back to `g1` by a bulk batch. Answers her identity id and the membership tags written.
    async fn watched_flow(
        s: &dyn Store,
        keys: &SealKeys,
        mark: impl std::future::Future<Output = ()>,
    ) -> (Uuid, Vec<Vec<u8>>) {
        let (g1, g2, g3) = (
            group(s, "g1").await,
            group(s, "g2").await,
            group(s, "g3").await,
        );
        let alice = member("alice", "alice@corp.example");
        s.add_member(&Context::tenant(), g1, &alice).await.unwrap();
        s.add_member(&Context::tenant(), g1, &member("bob", "bob@corp.example"))
            .await
            .unwrap();
        let alice_tag = hex::encode(keys.active().subject_tag(&alice.subject()));
        let dump = s.dump().await;
        let row = table(&dump, "identities")
            .iter()
            .find(|r| r[1].contains(&alice_tag))
            .expect("alice's identity");
        let id = Uuid::parse_str(&hex_token(&row[0], 32)).unwrap();

        mark.await;
        s.add_member(&Context::tenant(), g2, &alice).await.unwrap();
        s.add_member(&Context::tenant(), g3, &by_email("alice@corp.example"))
            .await
            .unwrap();
        s.remove_member(&Context::tenant(), g1, &alice.who())
            .await
            .unwrap();
        let batch = ApplyBatch {
            ops: vec![tenant_api::BatchOp {
                op: tenant_api::BatchOpKind::Add,
                group_id: g1,
                subject: None,
                email: alice.member.email.clone(),
            }],
            labels: vec![tenant_api::GroupLabel {
                group_id: g1,
                label: label("General"),
            }],
        };
        assert_eq!(
            s.apply_batch(&Context::tenant(), &batch)
                .await
                .unwrap()
                .applied,
            1
        );
        assert_eq!(
            s.groups_of(&alice.subject(), None).await.unwrap(),
            sorted(vec![g1, g2, g3])
        );
        let written = [g2, g3, g1]
            .iter()
            .map(|g| keys.active().member_tag(*g, id))
            .collect();
        (id, written)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[tokio::test]
    async fn sqlite_joins_and_leaves_leave_no_page_of_the_persons_identity_in_the_log() {
        let (keys, _) = fresh_keys();
        let db = TestDb::sqlite(keys.clone()).await;
        let path = db
            .database
            .url()
            .trim_start_matches("sqlite://")
            .to_string();
        let raw = &db.raw;
        // The log starts empty: everything in it afterwards was written by the flow.
        let mark = async {
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                .await
                .unwrap();
            assert_eq!(std::fs::metadata(format!("{path}-wal")).unwrap().len(), 0);
        };
        let (id, written) = watched_flow(db.store.as_ref(), &keys, mark).await;
        let log = std::fs::read(format!("{path}-wal")).unwrap();
        for tag in &written {
            assert!(
                contains(&log, tag),
                "the log holds the flow's membership rows"
            );
        }
        assert!(
            !contains(&log, id.as_bytes()),
            "a page holding alice's identity row was written beside her memberships"
        );
        db.finish().await;
    }

    #[tokio::test]
    #[ignore = "needs HUSH_TEST_POSTGRES_URL"]
    async fn postgres_joins_and_leaves_write_no_wal_record_about_the_persons_identity() {
        let (keys, _) = fresh_keys();
        let db = TestDb::postgres(keys.clone()).await;
        let Raw::PgStore(store) = &db.raw else {
            unreachable!()
        };
        let pool = store.pool().clone();
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            .execute(&pool)
            .await
            .unwrap();
        // Every relation of the two tables (heap and indexes), as `…/<database>/<file> ` the
        // way a WAL record's block reference names it.
        let files = |table: &'static str| {
            let pool = pool.clone();
            async move {
                let paths: Vec<String> = sqlx::query_scalar(
                    "SELECT pg_relation_filepath(c.oid) FROM pg_class c \
                     WHERE c.oid = $1::regclass \
                        OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = $1::regclass)",
                )
                .bind(table)
                .fetch_all(&pool)
                .await
                .unwrap();
                paths
                    .iter()
                    .map(|p| format!("/{} ", p.trim_start_matches("base/")))
                    .collect::<Vec<String>>()
            }
        };
        let start: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let mark = async {
            let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
                .fetch_one(&pool)
                .await
                .unwrap();
            *start.lock().unwrap() = Some(lsn);
        };
        let (_, _) = watched_flow(db.store.as_ref(), &keys, mark).await;
        let start = start.lock().unwrap().clone().unwrap();
        let blocks: Vec<String> = sqlx::query_scalar(
            "SELECT coalesce(block_ref, '') FROM pg_get_wal_records_info($1::pg_lsn, pg_current_wal_flush_lsn())",
        )
        .bind(&start)
        .fetch_all(&pool)
        .await
        .unwrap();
        let touches = |files: &[String]| {
            blocks
                .iter()
                .filter(|b| files.iter().any(|f| b.contains(f.as_str())))
                .count()
        };
        let memberships = files("memberships").await;
        let identities = files("identities").await;
        assert!(
            touches(&memberships) >= 4,
            "the WAL holds the flow's membership writes: {blocks:?}"
        );
        assert_eq!(
            touches(&identities),
            0,
            "a WAL record touched the identities (a rewrite or a row lock) beside alice's memberships"
        );
        db.finish().await;
    }
}
