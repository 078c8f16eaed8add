//! The store's behaviour, run on SQLite always and on Postgres when `HUSH_TEST_POSTGRES_URL`
//! is set (each test gets a fresh database `hush_t_<random hex>`, so tests never share state).
//!
//! The tests named after an invariant prove it against the tables themselves: a full dump of
//! the tenant's database must not name a person or link two memberships of the same person.

use super::*;
use domain::Email;
use std::path::PathBuf;

/// A store under test and what it takes to reopen or remove it.
struct TestDb {
    store: Arc<dyn Store>,
    raw: Raw,
    url: String,
    cleanup: Cleanup,
}

/// The concrete store, for statements the trait does not offer (tampering, constraints).
enum Raw {
    Sqlite(SqliteStore),
    Pg(PgStore),
}

enum Cleanup {
    File(PathBuf),
    Database { admin_url: String, name: String },
}

impl Raw {
    async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match self {
            Raw::Sqlite(s) => sqlx::query(sql)
                .execute(s.pool())
                .await
                .map(|r| r.rows_affected()),
            Raw::Pg(s) => sqlx::query(sql)
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

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl TestDb {
    async fn sqlite(keys: Arc<SealKeys>) -> Self {
        let path = std::env::temp_dir().join(format!("hush-tenant-{}.db", Uuid::new_v4().simple()));
        let url = format!("sqlite://{}", path.display());
        let pool = db::connect_sqlite(&url, 4).await.unwrap();
        let store = SqliteStore::migrate(pool, keys).await.unwrap();
        Self {
            store: Arc::new(store.clone()),
            raw: Raw::Sqlite(store),
            url,
            cleanup: Cleanup::File(path),
        }
    }

    async fn postgres(keys: Arc<SealKeys>) -> Option<Self> {
        let admin_url = std::env::var("HUSH_TEST_POSTGRES_URL").ok()?;
        let name = format!("hush_t_{}", Uuid::new_v4().simple());
        let admin = db::connect_postgres(&admin_url, 1).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let url = with_database(&admin_url, &name);
        let pool = db::connect_postgres(&url, 8).await.unwrap();
        let store = PgStore::migrate(pool, keys).await.unwrap();
        Some(Self {
            store: Arc::new(store.clone()),
            raw: Raw::Pg(store),
            url,
            cleanup: Cleanup::Database { admin_url, name },
        })
    }

    /// The same database behind another set of keys (a restart after a key rotation).
    async fn reopen(&self, keys: Arc<SealKeys>) -> Arc<dyn Store> {
        connect(&self.url, 4, keys).await.unwrap()
    }

    async fn finish(self) {
        let Self {
            raw,
            store,
            cleanup,
            ..
        } = self;
        drop(store);
        match raw {
            Raw::Sqlite(s) => s.pool().close().await,
            Raw::Pg(s) => s.pool().close().await,
        }
        match cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Database { admin_url, name } => {
                if let Ok(admin) = db::connect_postgres(&admin_url, 1).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            }
        }
    }
}

/// Generates each test twice: `sqlite::name` always, `postgres::name` when Postgres is set.
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
                async fn $name() {
                    let ($keys, $key_text) = fresh_keys();
                    let _ = &$key_text;
                    let Some($db) = TestDb::postgres($keys.clone()).await else {
                        eprintln!("HUSH_TEST_POSTGRES_URL is not set; skipping the Postgres run");
                        return;
                    };
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

fn member(s: &str, email: &str) -> MemberRef {
    MemberRef {
        subject: subject(s),
        email: Email::parse(email).unwrap(),
        kind: IdentityKind::Member,
    }
}

fn request(id: GroupId, local: &str) -> ProvisionGroup {
    ProvisionGroup {
        group_id: id,
        address: Email::parse(format!("{local}@groups.test.example")).unwrap(),
        display_name: domain::GroupName::parse(format!("Group {local}")).unwrap(),
    }
}

async fn group(store: &dyn Store, local: &str) -> GroupId {
    let id = GroupId::new();
    store.provision_group(&request(id, local)).await.unwrap();
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
    hex(s.as_bytes())
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
        let first = s.provision_group(&request(id, "parents")).await.unwrap();
        assert!(first.created);
        let again = s.provision_group(&request(id, "parents")).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.group, first.group);

        let mut renamed = request(id, "parents");
        renamed.display_name = domain::GroupName::parse("Parents at Work").unwrap();
        assert_eq!(s.provision_group(&renamed).await.unwrap().group.display_name, renamed.display_name);

        let other = GroupId::new();
        assert!(matches!(s.provision_group(&request(other, "parents")).await, Err(StoreError::AddressTaken)));
        assert!(matches!(s.provision_group(&request(id, "elsewhere")).await, Err(StoreError::AddressMismatch)));
    }

    async fn add_check_groups_of_count_and_remove_round_trip(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2) = (group(s, "one").await, group(s, "two").await);
        let alice = member("alice", "alice@corp.example");
        let bob = subject("bob");

        assert!(!s.is_member(g1, &alice.subject).await.unwrap());
        s.add_member(g1, &alice).await.unwrap();
        s.add_member(g2, &alice).await.unwrap();
        assert!(s.is_member(g1, &alice.subject).await.unwrap());
        assert!(s.is_member(g2, &alice.subject).await.unwrap());
        assert!(!s.is_member(g1, &bob).await.unwrap());

        let mut both = vec![g1, g2];
        both.sort();
        assert_eq!(s.groups_of(&alice.subject).await.unwrap(), both);
        assert!(s.groups_of(&bob).await.unwrap().is_empty());
        assert_eq!(s.member_count(g1).await.unwrap(), CountBucket::Under10);

        s.remove_member(g1, &alice.subject).await.unwrap();
        assert!(!s.is_member(g1, &alice.subject).await.unwrap());
        assert!(s.is_member(g2, &alice.subject).await.unwrap());
        assert_eq!(s.groups_of(&alice.subject).await.unwrap(), vec![g2]);
    }

    async fn writes_are_idempotent_and_leave_the_same_rows_whether_or_not_a_member_inv_3(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let g = group(s, "g").await;
        let alice = member("alice", "alice@corp.example");

        s.add_member(g, &alice).await.unwrap();
        let once = s.dump().await;
        s.add_member(g, &alice).await.unwrap();
        let twice = s.dump().await;
        // The same rows (same keys, same lengths); only ciphertexts (fresh nonces) differ.
        let shape = |d: &[(String, Vec<Vec<String>>)]| -> Vec<(String, usize, Vec<usize>)> {
            d.iter()
                .flat_map(|(t, rows)| rows.iter().map(move |r| (t.clone(), rows.len(), r.iter().map(String::len).collect())))
                .collect()
        };
        assert_eq!(shape(&once), shape(&twice));
        assert_eq!(table(&once, "memberships")[0][0], table(&twice, "memberships")[0][0], "same member_tag");
        assert_ne!(table(&once, "identities"), table(&twice, "identities"), "the list was rewritten");

        s.remove_member(g, &alice.subject).await.unwrap();
        s.remove_member(g, &alice.subject).await.unwrap();
        s.remove_member(g, &subject("never-seen")).await.unwrap();
        assert!(!s.is_member(g, &alice.subject).await.unwrap());
        assert!(table(&s.dump().await, "memberships").is_empty());
        assert_eq!(table(&s.dump().await, "identities").len(), 1, "removal never creates identities");
    }

    async fn unknown_groups_are_not_found_and_unknown_subjects_have_no_groups(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let nowhere = GroupId::new();
        let alice = member("alice", "alice@corp.example");
        assert!(matches!(s.add_member(nowhere, &alice).await, Err(StoreError::GroupNotFound)));
        assert!(matches!(s.remove_member(nowhere, &alice.subject).await, Err(StoreError::GroupNotFound)));
        assert!(matches!(s.is_member(nowhere, &alice.subject).await, Err(StoreError::GroupNotFound)));
        assert!(matches!(s.member_count(nowhere).await, Err(StoreError::GroupNotFound)));
        assert!(s.groups_of(&alice.subject).await.unwrap().is_empty());
        assert!(table(&s.dump().await, "identities").is_empty(), "nothing written for a missing group");
    }

    async fn counts_are_buckets(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let g = group(s, "big").await;
        for i in 0..10 {
            s.add_member(g, &member(&format!("p{i}"), &format!("p{i}@corp.example"))).await.unwrap();
        }
        assert_eq!(s.member_count(g).await.unwrap(), CountBucket::From10To49);
        s.remove_member(g, &subject("p0")).await.unwrap();
        assert_eq!(s.member_count(g).await.unwrap(), CountBucket::Under10);
    }

    async fn deprovisioning_removes_rows_and_list_entries_and_is_idempotent(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (doomed, kept) = (group(s, "doomed").await, group(s, "kept").await);
        for i in 0..3 {
            let m = member(&format!("p{i}"), &format!("p{i}@corp.example"));
            s.add_member(doomed, &m).await.unwrap();
            s.add_member(kept, &m).await.unwrap();
        }
        let solo = member("solo", "solo@corp.example");
        s.add_member(doomed, &solo).await.unwrap();

        s.deprovision_group(doomed).await.unwrap();
        s.deprovision_group(doomed).await.unwrap();
        assert!(matches!(s.member_count(doomed).await, Err(StoreError::GroupNotFound)));
        assert_eq!(s.groups_of(&subject("p1")).await.unwrap(), vec![kept]);
        assert!(s.groups_of(&solo.subject).await.unwrap().is_empty());
        assert!(s.is_member(kept, &subject("p2")).await.unwrap());
        assert_eq!(table(&s.dump().await, "memberships").len(), 3);

        // The same id provisioned again starts empty.
        s.provision_group(&request(doomed, "doomed")).await.unwrap();
        assert!(!s.is_member(doomed, &solo.subject).await.unwrap());
        assert_eq!(s.member_count(doomed).await.unwrap(), CountBucket::Under10);
    }

    async fn group_lists_are_padded_so_their_length_hides_the_count(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let few = member("few", "few@corp.example");
        let many = member("many", "many@corp.example");
        let mut groups = Vec::new();
        for i in 0..17 {
            groups.push(group(s, &format!("g{i}")).await);
        }
        s.add_member(groups[0], &few).await.unwrap();
        for g in &groups[..16] {
            s.add_member(*g, &many).await.unwrap();
        }
        let list_len = |d: &[(String, Vec<Vec<String>>)]| -> Vec<usize> {
            // sealed_groups is the 4th column of identities.
            table(d, "identities").iter().map(|r| r[3].len()).collect()
        };
        let lens = list_len(&s.dump().await);
        assert_eq!(lens[0], lens[1], "1 and 16 groups look alike");
        s.add_member(groups[16], &many).await.unwrap();
        let lens = list_len(&s.dump().await);
        assert_ne!(lens[0], lens[1], "17 groups take a second block");
        assert_eq!(s.groups_of(&many.subject).await.unwrap().len(), 17);
    }

    async fn a_dump_names_no_one_and_links_no_rows_inv_5(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2) = (group(s, "witness-support").await, group(s, "parents").await);
        let subject_text = "carol-7f3a-subject";
        let email_text = "carol.hidden@corp.example";
        let carol = member(subject_text, email_text);
        s.add_member(g1, &carol).await.unwrap();
        s.add_member(g2, &carol).await.unwrap();

        let dump = s.dump().await;
        let identities = table(&dump, "identities");
        assert_eq!(identities.len(), 1);
        let identity_hex = hex_token(&identities[0][0], 32);
        let subject_tag = hex_token(&identities[0][1], 64);

        for needle in [subject_text, email_text, "carol", "hidden@"] {
            for (t, cell) in cells(&dump) {
                assert!(!cell.contains(needle), "{needle:?} appears in clear in {t}");
                assert!(!cell.contains(&hex_of(needle)), "{needle:?} appears as hex in {t}");
            }
        }

        let rows = table(&dump, "memberships");
        assert_eq!(rows.len(), 2);
        // member_tag, group_id, sealed_identity, key_id
        assert_ne!(rows[0][0], rows[1][0], "member tags differ per group");
        assert_ne!(rows[0][1], rows[1][1]);
        assert_ne!(rows[0][2], rows[1][2], "sealed identities differ (fresh nonces)");
        assert_eq!(rows[0][3], rows[1][3], "only the key id is shared, and every row has it");
        for row in rows {
            for cell in row {
                assert!(!cell.contains(&identity_hex), "a membership row holds the identity id in clear");
                assert!(!cell.contains(&subject_tag), "a membership row holds the subject tag");
            }
        }
        // The identity holds the group ids only sealed.
        for g in [g1, g2] {
            let g_hex = hex(g.as_uuid().as_bytes());
            assert!(identities[0].iter().all(|c| !c.contains(&g_hex) && !c.contains(&g.to_string())));
        }
    }

    async fn identities_can_never_sign_in_inv_9(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let g = group(s, "g").await;
        s.add_member(g, &member("alice", "alice@corp.example")).await.unwrap();
        let dump = s.dump().await;
        // id, subject_tag, sealed_profile, sealed_groups, key_id, sign_in_enabled, disabled
        assert_eq!(table(&dump, "identities")[0][5], "false");
        let refused = db.raw.execute("UPDATE identities SET sign_in_enabled = TRUE").await;
        assert!(refused.is_err(), "the schema refuses sign-in");
    }

    async fn a_membership_moved_to_another_group_does_not_open(db, _keys, _key_text) {
        let s = db.store.as_ref();
        let (g1, g2) = (group(s, "one").await, group(s, "two").await);
        s.add_member(g1, &member("alice", "alice@corp.example")).await.unwrap();
        s.add_member(g2, &member("bob", "bob@corp.example")).await.unwrap();
        // Give the row of the lower group id the other row's sealed identity.
        db.raw
            .execute(
                "UPDATE memberships SET sealed_identity = \
                 (SELECT m.sealed_identity FROM memberships m WHERE m.group_id <> memberships.group_id) \
                 WHERE group_id = (SELECT group_id FROM memberships ORDER BY group_id LIMIT 1)",
            )
            .await
            .unwrap();
        let tampered = g1.min(g2);
        assert!(matches!(s.deprovision_group(tampered).await, Err(StoreError::Sealed(_))));
        assert!(s.is_member(tampered, &subject("alice")).await.is_ok(), "lookups use tags, not seals");
    }

    async fn keys_rotate_without_losing_anyone(db, keys, key_text) {
        let s = db.store.as_ref();
        let (g1, g2) = (group(s, "one").await, group(s, "two").await);
        let alice = member("alice", "alice@corp.example");
        s.add_member(g1, &alice).await.unwrap();
        s.add_member(g2, &alice).await.unwrap();
        let old_kid = keys.active().id().to_string();

        let new_text = SealKeys::generate_text();
        let rotated = db.reopen(keys_from(&format!("{},{}", new_text.as_str(), key_text))).await;
        let new_kid = rotated_kid(&new_text);
        assert!(rotated.is_member(g1, &alice.subject).await.unwrap());
        assert_eq!(rotated.groups_of(&alice.subject).await.unwrap().len(), 2);

        // A write moves what it touches to the new key.
        rotated.add_member(g1, &alice).await.unwrap();
        let dump = rotated.dump().await;
        assert_eq!(table(&dump, "identities")[0][4], new_kid);
        let kids: Vec<&str> = table(&dump, "memberships").iter().map(|r| r[3].as_str()).collect();
        assert!(kids.contains(&new_kid.as_str()) && kids.contains(&old_kid.as_str()));
        assert_eq!(table(&dump, "memberships").len(), 2, "moved, not duplicated");

        rotated.remove_member(g2, &alice.subject).await.unwrap();
        assert_eq!(rotated.groups_of(&alice.subject).await.unwrap(), vec![g1]);

        // Everything alice has left is under the new key: the old one can go.
        let only_new = db.reopen(keys_from(&new_text)).await;
        assert!(only_new.is_member(g1, &alice.subject).await.unwrap());
        assert!(!only_new.is_member(g2, &alice.subject).await.unwrap());
        assert_eq!(only_new.groups_of(&alice.subject).await.unwrap(), vec![g1]);
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
                tokio::spawn(async move { s.add_member(g, &dave).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        groups.sort();
        assert_eq!(s.groups_of(&dave.subject).await.unwrap(), groups);
        assert_eq!(table(&s.dump().await, "identities").len(), 1, "one identity, created once");
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
                    s.add_member(other, &m).await.unwrap();
                    match s.add_member(g, &m).await {
                        Ok(()) | Err(StoreError::GroupNotFound) => {}
                        Err(e) => panic!("{e}"),
                    }
                })
            })
            .collect();
        s.deprovision_group(g).await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        // Any add that got in before the deprovision was removed by it; any after found no
        // group. Either way nothing of `g` is left.
        let dump = s.dump().await;
        let g_hex = hex(g.as_uuid().as_bytes());
        assert!(table(&dump, "memberships").iter().all(|r| !r[1].contains(&g_hex)));
        for i in 0..16 {
            assert_eq!(s.groups_of(&subject(&format!("j{i}"))).await.unwrap(), vec![other]);
        }
    }
}

fn rotated_kid(text: &str) -> String {
    text.split(':').next().unwrap().to_string()
}

#[test]
fn database_names_are_swapped_in_urls() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "hush_t_1"),
        "postgres://postgres@127.0.0.1:5432/hush_t_1"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}
