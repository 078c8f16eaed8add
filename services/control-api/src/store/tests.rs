//! The store's behaviour, each test on SQLite (`sqlite::…`) and on Postgres (`postgres::…`,
//! ignored unless run with `--include-ignored` and `HUSH_TEST_POSTGRES_URL`); each test gets a
//! fresh database `hush_t_<random hex>`, so tests never share state.

use super::*;
use crate::catalog_audit::AuditContext;
use crate::model::{Description, GroupChanges, NewGroup, Owners};
use domain::LocalPart;
use service_kit::db::Backend as Kind;
use service_kit::testing::TestDatabase;
use std::future::Future;

/// Store calls made outside a request: no actor beyond an event's own, no request id.
fn sys() -> AuditContext {
    AuditContext::system()
}

/// A store under test and the database to remove after it.
struct TestDb {
    store: Arc<dyn Store>,
    raw: Raw,
    database: TestDatabase,
}

/// The concrete store, for statements the trait does not offer.
enum Raw {
    Sqlite(SqliteStore),
    Pg(PgStore),
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

    fn backend(&self) -> &'static str {
        match self {
            Raw::Sqlite(_) => "sqlite",
            Raw::Pg(_) => "postgres",
        }
    }
}

impl TestDb {
    async fn sqlite() -> Self {
        let database = TestDatabase::sqlite();
        let store = SqliteStore::new(
            SqlStore::migrate(db::connect_sqlite(database.url(), 4).await.unwrap())
                .await
                .unwrap(),
            OwnerKey::random(),
        );
        Self {
            store: Arc::new(store.clone()),
            raw: Raw::Sqlite(store),
            database,
        }
    }

    async fn postgres() -> Self {
        let database = TestDatabase::postgres().await;
        let store = PgStore::new(
            SqlStore::migrate(db::connect_postgres(database.url(), 8).await.unwrap())
                .await
                .unwrap(),
            OwnerKey::random(),
        );
        Self {
            store: Arc::new(store.clone()),
            raw: Raw::Pg(store),
            database,
        }
    }

    async fn remove(self) {
        match self.raw {
            Raw::Sqlite(s) => s.pool().close().await,
            Raw::Pg(s) => s.pool().close().await,
        }
        self.database.remove().await;
    }
}

/// Runs `test` on a fresh store of `kind`, then removes its database.
async fn on_backend<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Arc<dyn Store>, &'static str, Raw) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = match kind {
        Kind::Sqlite => TestDb::sqlite().await,
        Kind::Postgres => TestDb::postgres().await,
    };
    let raw = match &db.raw {
        Raw::Sqlite(s) => Raw::Sqlite(s.clone()),
        Raw::Pg(s) => Raw::Pg(s.clone()),
    };
    let backend = raw.backend();
    test(db.store.clone(), backend, raw).await;
    db.remove().await;
}

const T0: i64 = 1_700_000_000_000;

fn subject(s: &str) -> Subject {
    Subject::parse(s).unwrap()
}

fn label_name(s: &str) -> LabelName {
    LabelName::parse(s).unwrap()
}

fn new_group(name: &str, label: &str, policy: JoinPolicy, owner: &str) -> NewGroup {
    let local = LocalPart::slug_of(name).unwrap();
    NewGroup {
        id: GroupId::new(),
        name: GroupName::parse(name).unwrap(),
        description: Description::parse(format!("About {name}")).unwrap(),
        contact_address: Email::parse(format!("{}@groups.test.example", local.as_str())).unwrap(),
        local_part: local,
        label: label_name(label),
        join_policy: policy,
        sender_policy: None,
        creator: subject(owner),
    }
}

async fn seeded(store: &Arc<dyn Store>) {
    assert!(store.seed_labels(&Label::defaults(), T0).await.unwrap());
}

async fn created(store: &Arc<dyn Store>, g: &NewGroup) -> GroupRecord {
    match store.insert_group(g, &sys(), T0).await.unwrap() {
        GroupInsert::Created(r) => r,
        other => panic!("group not created: {other:?}"),
    }
}

/// Runs the saga's store side to completion for every due group (the tenant "confirms").
async fn settle(store: &Arc<dyn Store>, now: i64) {
    while let Some(claim) = store.claim_due(now, now + 60_000).await.unwrap() {
        let to = match claim.state {
            GroupState::Provisioning => GroupState::Active,
            _ => GroupState::Archived,
        };
        store.complete(&claim, to, now).await.unwrap();
    }
}

async fn default_labels_are_seeded_once_and_admin_edits_and_deletions_stick(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let names: Vec<String> = store
            .list_labels()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name.to_string())
            .collect();
        assert_eq!(
            names,
            ["Confidential", "General", "Highly Confidential"],
            "{backend}"
        );
        assert_eq!(store.list_labels().await.unwrap(), {
            let mut d = Label::defaults();
            d.sort_by(|a, b| a.name.cmp(&b.name));
            d
        });

        // An admin edits General and deletes Confidential; a restart seeds nothing.
        let mut general = store
            .get_label(&label_name("General"))
            .await
            .unwrap()
            .unwrap();
        general.description = "Edited by an admin".into();
        general.policy.guests_allowed = false;
        assert!(matches!(
            store
                .update_label(&general, &subject("lia"), &sys(), T0 + 1)
                .await
                .unwrap(),
            LabelUpdate::Updated(_)
        ));
        assert_eq!(
            store
                .delete_label(&label_name("Confidential"), &sys())
                .await
                .unwrap(),
            LabelDelete::Deleted
        );
        assert!(
            !store.seed_labels(&Label::defaults(), T0 + 2).await.unwrap(),
            "{backend}"
        );
        assert_eq!(
            store
                .get_label(&label_name("General"))
                .await
                .unwrap()
                .unwrap(),
            general
        );
        assert!(
            store
                .get_label(&label_name("Confidential"))
                .await
                .unwrap()
                .is_none(),
            "{backend}"
        );
    })
    .await;
}

async fn label_names_are_unique_ignoring_case(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let mut l = Label::defaults()[0].clone();
        assert_eq!(
            store.insert_label(&l, &sys(), T0).await.unwrap(),
            LabelInsert::NameTaken,
            "{backend}"
        );
        l.name = label_name("general");
        assert_eq!(
            store.insert_label(&l, &sys(), T0).await.unwrap(),
            LabelInsert::NameTaken,
            "{backend}"
        );
        l.name = label_name("Team Only");
        assert_eq!(
            store.insert_label(&l, &sys(), T0).await.unwrap(),
            LabelInsert::Created
        );
        assert_eq!(store.get_label(&l.name).await.unwrap().unwrap(), l);
        assert_eq!(
            store
                .update_label(
                    &{
                        let mut x = l.clone();
                        x.name = label_name("Nobody");
                        x
                    },
                    &subject("lia"),
                    &sys(),
                    T0
                )
                .await
                .unwrap(),
            LabelUpdate::NotFound
        );
        assert_eq!(
            store
                .delete_label(&label_name("Nobody"), &sys())
                .await
                .unwrap(),
            LabelDelete::NotFound
        );
    })
    .await;
}

async fn a_label_in_use_cannot_be_deleted_nor_drop_a_join_policy_a_live_group_uses(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let g = created(
            &store,
            &new_group("Book Club", "General", JoinPolicy::Open, "alice"),
        )
        .await;
        assert_eq!(
            store
                .delete_label(&label_name("General"), &sys())
                .await
                .unwrap(),
            LabelDelete::InUse,
            "{backend}"
        );

        let mut general = g.label.clone();
        general.policy.join_policies = vec![JoinPolicy::Invite];
        assert_eq!(
            store
                .update_label(&general, &subject("lia"), &sys(), T0)
                .await
                .unwrap(),
            LabelUpdate::JoinPoliciesInUse(vec![JoinPolicy::Open]),
            "{backend}"
        );
        // Once the group is archived, its join policy no longer binds the label; the group
        // still names it, so the label stays undeletable.
        settle(&store, T0).await;
        store
            .archive_group(g.id, &subject("alice"), &sys(), T0)
            .await
            .unwrap();
        settle(&store, T0).await;
        assert!(matches!(
            store
                .update_label(&general, &subject("lia"), &sys(), T0)
                .await
                .unwrap(),
            LabelUpdate::Updated(_)
        ));
        assert_eq!(
            store
                .delete_label(&label_name("General"), &sys())
                .await
                .unwrap(),
            LabelDelete::InUse
        );
    })
    .await;
}

async fn loosening_a_label_in_use_waits_for_a_second_label_admin(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let conf = label_name("Confidential");
        let before = store.get_label(&conf).await.unwrap().unwrap();
        // Unused, a label loosens at once.
        let mut open = before.clone();
        open.policy.guests_allowed = true;
        assert_eq!(
            store
                .update_label(&open, &subject("lia"), &sys(), T0)
                .await
                .unwrap(),
            LabelUpdate::Updated(open.clone()),
            "{backend}"
        );
        assert_eq!(
            store
                .update_label(&before, &subject("lia"), &sys(), T0)
                .await
                .unwrap(),
            LabelUpdate::Updated(before.clone())
        );
        // In use, the same change waits; the label stays as it was.
        let g = created(
            &store,
            &new_group(
                "Witness Support",
                "Confidential",
                JoinPolicy::Approval,
                "alice",
            ),
        )
        .await;
        assert_eq!(store.groups_under_label(&conf).await.unwrap(), vec![g.id]);
        let LabelUpdate::Proposed(change) = store
            .update_label(&open, &subject("lia"), &sys(), T0 + 1)
            .await
            .unwrap()
        else {
            panic!("{backend}: a loosening of a label in use applied at once");
        };
        assert_eq!(
            (change.proposed.clone(), change.before.clone()),
            (open.clone(), before.clone())
        );
        assert_eq!(store.get_label(&conf).await.unwrap().unwrap(), before);
        assert_eq!(
            store.pending_label_changes().await.unwrap(),
            vec![change.clone()]
        );
        // One pending change a label.
        let mut agents = before.clone();
        agents.policy.agents_allowed = true;
        assert_eq!(
            store
                .update_label(&agents, &subject("max"), &sys(), T0)
                .await
                .unwrap(),
            LabelUpdate::ChangePending(change.id)
        );
        // The proposer cannot approve it; a second label-admin can.
        assert_eq!(
            store
                .approve_label_change(change.id, &subject("lia"), &sys(), T0)
                .await
                .unwrap(),
            LabelApproval::SameAdmin
        );
        assert_eq!(store.get_label(&conf).await.unwrap().unwrap(), before);
        assert_eq!(
            store
                .approve_label_change(change.id, &subject("max"), &sys(), T0 + 2)
                .await
                .unwrap(),
            LabelApproval::Approved(open.clone())
        );
        assert_eq!(store.get_label(&conf).await.unwrap().unwrap(), open);
        assert!(store.pending_label_changes().await.unwrap().is_empty());
        assert_eq!(
            store
                .approve_label_change(change.id, &subject("max"), &sys(), T0)
                .await
                .unwrap(),
            LabelApproval::NotFound
        );

        // Tightening applies at once, even with a loosening pending, which it overtakes.
        let LabelUpdate::Proposed(pending) = store
            .update_label(&agents_too(&open), &subject("lia"), &sys(), T0)
            .await
            .unwrap()
        else {
            panic!("{backend}");
        };
        assert_eq!(
            store
                .update_label(&before, &subject("lia"), &sys(), T0)
                .await
                .unwrap(),
            LabelUpdate::Updated(before.clone())
        );
        assert_eq!(
            store
                .approve_label_change(pending.id, &subject("max"), &sys(), T0)
                .await
                .unwrap(),
            LabelApproval::Overtaken
        );
        assert_eq!(store.get_label(&conf).await.unwrap().unwrap(), before);
        // A rejected change is gone.
        let LabelUpdate::Proposed(again) = store
            .update_label(&open, &subject("lia"), &sys(), T0)
            .await
            .unwrap()
        else {
            panic!("{backend}");
        };
        assert!(store
            .reject_label_change(again.id, &subject("lia"), &sys(), T0)
            .await
            .unwrap());
        assert!(!store
            .reject_label_change(again.id, &subject("lia"), &sys(), T0)
            .await
            .unwrap());
        assert_eq!(store.get_label(&conf).await.unwrap().unwrap(), before);
        let actions: Vec<String> = store
            .catalog_audit(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .filter(|a| a.starts_with("label.change"))
            .collect();
        assert_eq!(
            actions,
            [
                "label.change-proposed",
                "label.change-approved",
                "label.change-proposed",
                "label.change-overtaken",
                "label.change-proposed",
                "label.change-rejected",
            ]
        );
    })
    .await;
}

async fn relabelling_to_a_stricter_label_applies_and_to_a_looser_one_waits(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let g = created(
            &store,
            &new_group("Book Club", "General", JoinPolicy::Approval, "alice"),
        )
        .await;
        settle(&store, T0).await;
        let (general, conf, hc) = (
            label_name("General"),
            label_name("Confidential"),
            label_name("Highly Confidential"),
        );
        // Stricter: applies at once.
        let Relabel::Done(record) = store
            .relabel_group(g.id, &conf, &subject("alice"), &sys(), T0 + 1)
            .await
            .unwrap()
        else {
            panic!("{backend}: a move to a stricter label did not apply");
        };
        assert_eq!(record.label.name, conf, "{backend}");
        assert_eq!(
            store.get_group(g.id).await.unwrap().unwrap().label.name,
            conf
        );
        // A label that does not allow the group's join policy refuses it; no such label neither.
        assert!(matches!(
            store
                .relabel_group(g.id, &hc, &subject("alice"), &sys(), T0)
                .await
                .unwrap(),
            Relabel::JoinPolicyRefused(l) if l.name == hc
        ));
        assert_eq!(
            store
                .relabel_group(g.id, &label_name("Nope"), &subject("alice"), &sys(), T0)
                .await
                .unwrap(),
            Relabel::NoSuchLabel
        );
        assert_eq!(
            store
                .relabel_group(GroupId::new(), &conf, &subject("alice"), &sys(), T0)
                .await
                .unwrap(),
            Relabel::NotFound
        );
        // Looser: filed; the group keeps its label; one pending move a group.
        let Relabel::Proposed(change) = store
            .relabel_group(g.id, &general, &subject("alice"), &sys(), T0 + 2)
            .await
            .unwrap()
        else {
            panic!("{backend}: a move to a looser label applied at once");
        };
        assert_eq!(
            (
                change.group,
                &change.from,
                &change.to.name,
                &change.proposed_by
            ),
            (g.id, &conf, &general, &subject("alice"))
        );
        assert_eq!(
            store.get_group(g.id).await.unwrap().unwrap().label.name,
            conf
        );
        assert_eq!(
            store.pending_relabels().await.unwrap(),
            vec![change.clone()]
        );
        assert_eq!(
            store
                .relabel_group(g.id, &general, &subject("lia"), &sys(), T0)
                .await
                .unwrap(),
            Relabel::Pending(change.id)
        );
        // Its proposer cannot approve it; someone else can.
        assert_eq!(
            store
                .approve_relabel(change.id, &subject("alice"), &sys(), T0)
                .await
                .unwrap(),
            RelabelApproval::SameAdmin
        );
        let RelabelApproval::Approved(record) = store
            .approve_relabel(change.id, &subject("lia"), &sys(), T0 + 3)
            .await
            .unwrap()
        else {
            panic!("{backend}: a second person's approval did not apply");
        };
        assert_eq!(record.label.name, general);
        assert!(store.pending_relabels().await.unwrap().is_empty());
        assert_eq!(
            store
                .approve_relabel(change.id, &subject("lia"), &sys(), T0)
                .await
                .unwrap(),
            RelabelApproval::NotFound
        );

        // A move overtaken by a change of the group's label is dropped, not applied.
        let Relabel::Done(_) = store
            .relabel_group(g.id, &conf, &subject("alice"), &sys(), T0 + 4)
            .await
            .unwrap()
        else {
            panic!("{backend}");
        };
        let Relabel::Proposed(first) = store
            .relabel_group(g.id, &general, &subject("alice"), &sys(), T0 + 5)
            .await
            .unwrap()
        else {
            panic!("{backend}");
        };
        // A stricter move applies even with a looser one pending, which it overtakes.
        let mut strict = store.get_label(&conf).await.unwrap().unwrap();
        strict.name = label_name("Staff Only");
        strict.policy.join_policies = vec![JoinPolicy::Approval];
        assert_eq!(
            store.insert_label(&strict, &sys(), T0).await.unwrap(),
            LabelInsert::Created
        );
        let Relabel::Done(_) = store
            .relabel_group(g.id, &strict.name, &subject("alice"), &sys(), T0 + 6)
            .await
            .unwrap()
        else {
            panic!("{backend}");
        };
        assert_eq!(
            store
                .approve_relabel(first.id, &subject("lia"), &sys(), T0 + 7)
                .await
                .unwrap(),
            RelabelApproval::Overtaken
        );
        assert_eq!(
            store.get_group(g.id).await.unwrap().unwrap().label.name,
            strict.name
        );
        // A rejected move is gone.
        let Relabel::Proposed(again) = store
            .relabel_group(g.id, &general, &subject("alice"), &sys(), T0 + 8)
            .await
            .unwrap()
        else {
            panic!("{backend}");
        };
        assert!(store
            .reject_relabel(again.id, &subject("lia"), &sys(), T0)
            .await
            .unwrap());
        assert!(!store
            .reject_relabel(again.id, &subject("lia"), &sys(), T0)
            .await
            .unwrap());
        assert_eq!(
            store.get_group(g.id).await.unwrap().unwrap().label.name,
            strict.name
        );
        let actions: Vec<String> = store
            .catalog_audit(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .filter(|a| a.starts_with("group.relabel"))
            .collect();
        assert_eq!(
            actions,
            [
                "group.relabeled",
                "group.relabel-proposed",
                "group.relabel-approved",
                "group.relabeled",
                "group.relabel-proposed",
                "group.relabeled",
                "group.relabel-overtaken",
                "group.relabel-proposed",
                "group.relabel-rejected",
            ],
            "{backend}"
        );
    })
    .await;
}

fn agents_too(l: &Label) -> Label {
    let mut l = l.clone();
    l.policy.agents_allowed = true;
    l
}

async fn creating_a_group_checks_the_label_and_the_address(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let g = created(
            &store,
            &new_group("Parents at Work", "General", JoinPolicy::Open, "alice"),
        )
        .await;
        assert_eq!(g.state, GroupState::Provisioning, "{backend}");
        assert_eq!(g.owners.as_slice(), &[subject("alice")]);
        assert_eq!(
            g.contact_address.as_str(),
            "parents-at-work@groups.test.example"
        );
        assert_eq!(g.label.name.as_str(), "General");
        assert_eq!(store.get_group(g.id).await.unwrap().unwrap(), g);

        let again = new_group("Parents at Work", "General", JoinPolicy::Open, "bob");
        assert_eq!(
            store.insert_group(&again, &sys(), T0).await.unwrap(),
            GroupInsert::AddressTaken,
            "{backend}"
        );
        let nolabel = new_group("Orphans", "Nonexistent", JoinPolicy::Open, "bob");
        assert_eq!(
            store.insert_group(&nolabel, &sys(), T0).await.unwrap(),
            GroupInsert::NoSuchLabel
        );
        let wrong = new_group("Secret", "Highly Confidential", JoinPolicy::Open, "bob");
        match store.insert_group(&wrong, &sys(), T0).await.unwrap() {
            GroupInsert::JoinPolicyRefused(l) => {
                assert_eq!(l.policy.join_policies, vec![JoinPolicy::Invite])
            }
            other => panic!("{backend}: {other:?}"),
        }
        // Nothing half-written by the refusals.
        assert!(store.get_group(nolabel.id).await.unwrap().is_none());
        assert!(store.get_group(wrong.id).await.unwrap().is_none());
        assert!(store.get_group(again.id).await.unwrap().is_none());
    })
    .await;
}

async fn discovery_finds_active_groups_the_caller_may_enter_by_substring_in_pages(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        for (name, label, policy) in [
            ("Open Forum", "General", JoinPolicy::Open),
            ("Hidden Forum", "Confidential", JoinPolicy::Approval),
            ("100% Forum_Club", "General", JoinPolicy::Open),
            ("Chess", "General", JoinPolicy::Open),
        ] {
            created(&store, &new_group(name, label, policy, "alice")).await;
        }
        let pending = created(
            &store,
            &new_group("Pending Forum", "General", JoinPolicy::Open, "alice"),
        )
        .await;
        settle(&store, T0).await;
        // One more, created after the saga ran: still provisioning, so never discovered.
        created(
            &store,
            &new_group("Late Forum", "General", JoinPolicy::Open, "alice"),
        )
        .await;
        assert_eq!(
            store.get_group(pending.id).await.unwrap().unwrap().state,
            GroupState::Active
        );

        let find = |kind: IdentityKind, text: &str| {
            let store = store.clone();
            let text = text.to_string();
            async move {
                store
                    .discover(&DiscoverQuery {
                        kind,
                        text,
                        after: None,
                        limit: 50,
                    })
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|g| g.name.to_string())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            find(IdentityKind::Member, "FORUM").await,
            [
                "100% Forum_Club",
                "Hidden Forum",
                "Open Forum",
                "Pending Forum"
            ],
            "{backend}"
        );
        assert_eq!(
            find(IdentityKind::Guest, "forum").await,
            ["100% Forum_Club", "Open Forum", "Pending Forum"]
        );
        assert!(
            find(IdentityKind::Agent, "forum").await.is_empty(),
            "no default label admits agents"
        );
        // Wildcards are literal text; the description is searched too.
        assert_eq!(
            find(IdentityKind::Member, "%").await,
            ["100% Forum_Club"],
            "{backend}"
        );
        assert_eq!(find(IdentityKind::Member, "m_c").await, ["100% Forum_Club"]);
        assert!(find(IdentityKind::Member, "m%c").await.is_empty());
        assert_eq!(find(IdentityKind::Member, "about chess").await, ["Chess"]);
        assert_eq!(find(IdentityKind::Member, "").await.len(), 5);

        // Pages of two walk the same order with no repeats and no gaps.
        let mut after = None;
        let mut walked = Vec::new();
        loop {
            let page = store
                .discover(&DiscoverQuery {
                    kind: IdentityKind::Member,
                    text: String::new(),
                    after: after.clone(),
                    limit: 2,
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            let last = page.last().unwrap();
            after = Some((last.name.to_string(), last.id));
            walked.extend(page.into_iter().map(|g| g.name.to_string()));
        }
        assert_eq!(
            walked,
            [
                "100% Forum_Club",
                "Chess",
                "Hidden Forum",
                "Open Forum",
                "Pending Forum"
            ],
            "{backend}"
        );
    })
    .await;
}

async fn owners_edit_within_the_label_and_nobody_else_edits(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let g = created(
            &store,
            &new_group("Editors", "Confidential", JoinPolicy::Approval, "alice"),
        )
        .await;
        let alice = subject("alice");

        let to_open = GroupChanges {
            join_policy: Some(JoinPolicy::Open),
            ..Default::default()
        };
        assert!(
            matches!(
                store
                    .update_group(g.id, &alice, &to_open, &sys(), T0)
                    .await
                    .unwrap(),
                GroupWrite::JoinPolicyRefused(_)
            ),
            "{backend}"
        );
        let not_owner = store
            .update_group(
                g.id,
                &subject("mallory"),
                &GroupChanges::default(),
                &sys(),
                T0,
            )
            .await
            .unwrap();
        assert_eq!(not_owner, GroupWrite::NotOwner);
        assert_eq!(
            store
                .update_group(GroupId::new(), &alice, &to_open, &sys(), T0)
                .await
                .unwrap(),
            GroupWrite::NotFound
        );

        let changes = GroupChanges {
            description: Some(Description::parse("New words").unwrap()),
            join_policy: Some(JoinPolicy::Invite),
            sender_policy: Some(SenderPolicy::Members),
            owners: Some(Owners::parse(vec![subject("carol"), alice.clone()]).unwrap()),
        };
        let GroupWrite::Done(after) = store
            .update_group(g.id, &alice, &changes, &sys(), T0 + 5)
            .await
            .unwrap()
        else {
            panic!("{backend}: edit refused");
        };
        assert_eq!(after.description.as_str(), "New words");
        assert_eq!(after.join_policy, JoinPolicy::Invite);
        assert_eq!(after.sender_policy(), SenderPolicy::Members, "{backend}");
        // Confidential bars guests and agents: carol is invited, not made owner, until she
        // accepts (her handler checked her token's kind).
        assert_eq!(after.owners.as_slice(), std::slice::from_ref(&alice));
        assert_eq!(
            store.invited_owners(g.id).await.unwrap(),
            vec![subject("carol")]
        );
        assert_eq!(after.updated_at, T0 + 5);
        assert_eq!(after.name, g.name, "untouched fields stay");
        assert!(store
            .answer_ownership(g.id, &subject("mallory"), true, &sys(), T0)
            .await
            .unwrap()
            .is_none());
        let accepted = store
            .answer_ownership(g.id, &subject("carol"), true, &sys(), T0 + 6)
            .await
            .unwrap()
            .expect("carol was invited");
        assert_eq!(
            accepted.owners.as_slice(),
            &[alice.clone(), subject("carol")]
        );
        assert!(store.invited_owners(g.id).await.unwrap().is_empty());

        // Carol, now an owner, hands the group over entirely.
        let handover = GroupChanges {
            owners: Some(Owners::one(subject("dave"))),
            ..Default::default()
        };
        assert!(matches!(
            store
                .update_group(g.id, &subject("carol"), &handover, &sys(), T0)
                .await
                .unwrap(),
            GroupWrite::Done(_)
        ));
        assert_eq!(
            store
                .update_group(g.id, &alice, &GroupChanges::default(), &sys(), T0)
                .await
                .unwrap(),
            GroupWrite::NotOwner
        );
        // A group always has an owner: carol stays one until dave accepts and she steps down.
        assert_eq!(
            store
                .get_group(g.id)
                .await
                .unwrap()
                .unwrap()
                .owners
                .as_slice(),
            &[subject("carol")]
        );
        store
            .answer_ownership(g.id, &subject("dave"), true, &sys(), T0)
            .await
            .unwrap()
            .expect("dave was invited");
        let step_down = GroupChanges {
            owners: Some(Owners::one(subject("dave"))),
            ..Default::default()
        };
        let GroupWrite::Done(after) = store
            .update_group(g.id, &subject("carol"), &step_down, &sys(), T0)
            .await
            .unwrap()
        else {
            panic!("{backend}");
        };
        assert_eq!(after.owners.as_slice(), &[subject("dave")]);

        // Archived groups take no edits.
        store
            .archive_group(g.id, &subject("dave"), &sys(), T0)
            .await
            .unwrap();
        let edit = GroupChanges {
            description: Some(Description::default()),
            ..Default::default()
        };
        assert_eq!(
            store
                .update_group(g.id, &subject("dave"), &edit, &sys(), T0)
                .await
                .unwrap(),
            GroupWrite::NotEditable(GroupState::Archiving)
        );
    })
    .await;
}

async fn the_saga_leases_one_group_to_one_worker_and_retries_after_failures(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let g = created(
            &store,
            &new_group("Night Shift", "General", JoinPolicy::Open, "alice"),
        )
        .await;

        // Not due before it was created; due at once after.
        assert!(
            store
                .claim_due(T0 - 1, T0 + 60_000)
                .await
                .unwrap()
                .is_none(),
            "{backend}"
        );
        let claim = store
            .claim_due(T0, T0 + 60_000)
            .await
            .unwrap()
            .expect("due");
        assert_eq!(
            (claim.group, claim.state, claim.attempts),
            (g.id, GroupState::Provisioning, 0)
        );
        // Leased: nobody else gets it while the lease runs.
        assert!(
            store
                .claim_due(T0 + 59_999, T0 + 120_000)
                .await
                .unwrap()
                .is_none(),
            "{backend}"
        );

        // The tenant call fails: recorded, retried no sooner than asked.
        store
            .defer(
                &claim,
                "the tenant is unavailable: could not connect",
                T0 + 1_000,
                T0,
            )
            .await
            .unwrap();
        let status = store.saga_status(g.id).await.unwrap().unwrap();
        assert_eq!(status.attempts, 1);
        assert_eq!(
            status.last_error.as_deref(),
            Some("the tenant is unavailable: could not connect")
        );
        assert_eq!(status.next_attempt_at, Some(T0 + 1_000));
        assert!(store
            .claim_due(T0 + 999, T0 + 60_000)
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            store.get_group(g.id).await.unwrap().unwrap().state,
            GroupState::Provisioning
        );

        let second = store
            .claim_due(T0 + 1_000, T0 + 61_000)
            .await
            .unwrap()
            .expect("due again");
        assert_eq!(second.attempts, 1);
        // The first lease is stale: it can neither finish nor defer the group.
        assert!(!store
            .complete(&claim, GroupState::Active, T0 + 1_001)
            .await
            .unwrap());
        store
            .defer(&claim, "stale", T0 + 999_999, T0 + 1_001)
            .await
            .unwrap();
        assert_eq!(
            store
                .saga_status(g.id)
                .await
                .unwrap()
                .unwrap()
                .next_attempt_at,
            Some(T0 + 61_000)
        );

        assert!(
            store
                .complete(&second, GroupState::Active, T0 + 1_002)
                .await
                .unwrap(),
            "{backend}"
        );
        let active = store.get_group(g.id).await.unwrap().unwrap();
        assert_eq!(active.state, GroupState::Active);
        let status = store.saga_status(g.id).await.unwrap().unwrap();
        assert_eq!(
            (status.attempts, status.last_error, status.next_attempt_at),
            (0, None, None)
        );
        assert!(store
            .claim_due(i64::MAX / 2, i64::MAX / 2)
            .await
            .unwrap()
            .is_none());
    })
    .await;
}

async fn a_lease_that_runs_out_is_taken_over(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        created(
            &store,
            &new_group("Crashy", "General", JoinPolicy::Open, "alice"),
        )
        .await;
        let dead = store.claim_due(T0, T0 + 60_000).await.unwrap().unwrap();
        let next = store
            .claim_due(T0 + 60_000, T0 + 120_000)
            .await
            .unwrap()
            .expect("lease expired");
        assert_eq!(next.group, dead.group, "{backend}");
        assert_ne!(next.lease, dead.lease);
    })
    .await;
}

async fn archiving_while_provisioning_is_in_flight_waits_for_the_provisioning_call(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let g = created(
            &store,
            &new_group("Short Lived", "General", JoinPolicy::Open, "alice"),
        )
        .await;
        let provisioning = store.claim_due(T0, T0 + 60_000).await.unwrap().unwrap();

        // Only an owner archives.
        assert_eq!(
            store
                .archive_group(g.id, &subject("bob"), &sys(), T0)
                .await
                .unwrap(),
            GroupWrite::NotOwner
        );
        let GroupWrite::Done(r) = store
            .archive_group(g.id, &subject("alice"), &sys(), T0 + 1)
            .await
            .unwrap()
        else {
            panic!("{backend}: archive refused");
        };
        assert_eq!(r.state, GroupState::Archiving);
        // The provisioning lease still holds the group: the deprovisioning work is not yet due.
        assert!(
            store
                .claim_due(T0 + 2, T0 + 60_000)
                .await
                .unwrap()
                .is_none(),
            "{backend}"
        );

        // The provisioning call returns: the group does not become active, and the
        // deprovisioning work is due at once.
        assert!(!store
            .complete(&provisioning, GroupState::Active, T0 + 3)
            .await
            .unwrap());
        assert_eq!(
            store.get_group(g.id).await.unwrap().unwrap().state,
            GroupState::Archiving
        );
        let archiving = store
            .claim_due(T0 + 3, T0 + 60_000)
            .await
            .unwrap()
            .expect("due");
        assert_eq!(archiving.state, GroupState::Archiving);
        assert!(store
            .complete(&archiving, GroupState::Archived, T0 + 4)
            .await
            .unwrap());
        assert_eq!(
            store.get_group(g.id).await.unwrap().unwrap().state,
            GroupState::Archived
        );

        // Archiving again changes nothing.
        let GroupWrite::Done(r) = store
            .archive_group(g.id, &subject("alice"), &sys(), T0 + 5)
            .await
            .unwrap()
        else {
            panic!("{backend}");
        };
        assert_eq!(r.state, GroupState::Archived);
        assert!(store
            .claim_due(T0 + 6, T0 + 60_000)
            .await
            .unwrap()
            .is_none());
    })
    .await;
}

async fn concurrent_workers_never_hold_the_same_group(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let mut ids = Vec::new();
        for i in 0..12 {
            ids.push(
                created(
                    &store,
                    &new_group(&format!("Group {i}"), "General", JoinPolicy::Open, "alice"),
                )
                .await
                .id,
            );
        }
        let mut workers = Vec::new();
        for _ in 0..4 {
            let store = store.clone();
            workers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(c) = store.claim_due(T0, T0 + 60_000).await.unwrap() {
                    got.push(c.group);
                }
                got
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all.sort();
        ids.sort();
        assert_eq!(all, ids, "{backend}: every group claimed exactly once");
    })
    .await;
}

async fn lookup_returns_the_groups_that_exist(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let a = created(
            &store,
            &new_group("Alpha", "General", JoinPolicy::Open, "alice"),
        )
        .await;
        let b = created(
            &store,
            &new_group("Beta", "Highly Confidential", JoinPolicy::Invite, "bob"),
        )
        .await;
        let mut found = store
            .lookup_groups(&[b.id, GroupId::new(), a.id, a.id])
            .await
            .unwrap();
        found.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(found, vec![a, b], "{backend}");
        assert!(store.lookup_groups(&[]).await.unwrap().is_empty());
    })
    .await;
}

async fn the_schema_refuses_what_the_types_refuse(kind: Kind) {
    on_backend(kind, |store, backend, raw| async move {
        seeded(&store).await;
        for bad in [
            "INSERT INTO labels (name, description, guests_allowed, agents_allowed, \
             join_policies, sender_policy, created_at, updated_at) \
             VALUES ('L', 'd', true, true, '', 'anyone', 0, 0)",
            "INSERT INTO labels (name, description, guests_allowed, agents_allowed, \
             join_policies, sender_policy, created_at, updated_at) \
             VALUES ('L', 'd', true, true, 'open', 'nobody', 0, 0)",
            "INSERT INTO labels (name, description, guests_allowed, agents_allowed, \
             join_policies, sender_policy, rank, created_at, updated_at) \
             VALUES ('L', 'd', true, true, 'open', 'anyone', 1001, 0, 0)",
            "INSERT INTO seeds VALUES ('default-labels', 0)",
        ] {
            assert!(raw.execute(bad).await.is_err(), "{backend} accepted: {bad}");
        }
        // The same statement within every CHECK is taken: the ones above fail on their CHECKs.
        raw.execute(
            "INSERT INTO labels (name, description, guests_allowed, agents_allowed, \
             join_policies, sender_policy, rank, created_at, updated_at) \
             VALUES ('L', 'd', true, true, 'open', 'anyone', 1000, 0, 0)",
        )
        .await
        .unwrap_or_else(|e| panic!("{backend} refused a valid label: {e}"));
        // No table of the catalog has anything to say about members (INV-1).
        let columns_sql = match raw {
            Raw::Sqlite(_) => "SELECT COUNT(*) FROM pragma_table_info('groups') WHERE name LIKE '%member%'",
            Raw::Pg(_) => "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = 'public' AND column_name LIKE '%member%'",
        };
        let n: i64 = match &raw {
            Raw::Sqlite(s) => sqlx::query_scalar(columns_sql).fetch_one(s.pool()).await.unwrap(),
            Raw::Pg(s) => sqlx::query_scalar(columns_sql).fetch_one(s.pool()).await.unwrap(),
        };
        assert_eq!(n, 0, "{backend}");
    })
    .await;
}

async fn the_catalog_audit_records_the_context_it_is_given(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let ada = AuditContext::request(&subject("ada"), Some("req-1".into()));
        let mut l = store
            .get_label(&label_name("General"))
            .await
            .unwrap()
            .unwrap();
        l.name = label_name("Team Only");
        assert_eq!(
            store.insert_label(&l, &ada, T0).await.unwrap(),
            LabelInsert::Created
        );
        // A group event names its own actor; the request id still comes from the context.
        let g = new_group("Rowing", "General", JoinPolicy::Open, "bob");
        let bob = AuditContext::request(&subject("bob"), Some("req-2".into()));
        assert!(matches!(
            store.insert_group(&g, &bob, T0).await.unwrap(),
            GroupInsert::Created(_)
        ));
        store
            .archive_group(g.id, &subject("bob"), &sys(), T0)
            .await
            .unwrap();
        // Outside a request: no actor, no request id.
        assert_eq!(
            store
                .delete_label(&label_name("Team Only"), &sys())
                .await
                .unwrap(),
            LabelDelete::Deleted
        );

        let got: Vec<_> = store
            .catalog_audit(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.action, e.actor, e.request_id))
            .collect();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            got,
            [
                ("label.created".to_string(), some("ada"), some("req-1")),
                ("group.created".to_string(), some("bob"), some("req-2")),
                ("group.archived".to_string(), some("bob"), None),
                ("label.deleted".to_string(), None, None),
            ],
            "{backend}"
        );
    })
    .await;
}

/// Every value of every column of every table, as text: what a dump of the database shows.
async fn dump(raw: &Raw) -> Vec<(String, String)> {
    let tables_sql = match raw {
        Raw::Sqlite(_) => "SELECT name FROM sqlite_master WHERE type = 'table'",
        Raw::Pg(_) => {
            "SELECT table_name::text FROM information_schema.tables \
                       WHERE table_schema = 'public'"
        }
    };
    let columns_sql = match raw {
        Raw::Sqlite(_) => "SELECT name FROM pragma_table_info($1)",
        Raw::Pg(_) => {
            "SELECT column_name::text FROM information_schema.columns \
                       WHERE table_schema = 'public' AND table_name = $1"
        }
    };
    let mut out = Vec::new();
    let tables: Vec<String> = match raw {
        Raw::Sqlite(s) => sqlx::query_scalar(tables_sql)
            .fetch_all(s.pool())
            .await
            .unwrap(),
        Raw::Pg(s) => sqlx::query_scalar(tables_sql)
            .fetch_all(s.pool())
            .await
            .unwrap(),
    };
    for table in tables {
        let columns: Vec<String> = match raw {
            Raw::Sqlite(s) => sqlx::query_scalar(columns_sql)
                .bind(&table)
                .fetch_all(s.pool())
                .await
                .unwrap(),
            Raw::Pg(s) => sqlx::query_scalar(columns_sql)
                .bind(&table)
                .fetch_all(s.pool())
                .await
                .unwrap(),
        };
        for column in columns {
            let sql = match raw {
                Raw::Sqlite(_) => format!("SELECT quote(\"{column}\") FROM \"{table}\""),
                Raw::Pg(_) => format!("SELECT \"{column}\"::text FROM \"{table}\""),
            };
            let values: Vec<Option<String>> = match raw {
                Raw::Sqlite(s) => sqlx::query_scalar(&sql).fetch_all(s.pool()).await.unwrap(),
                Raw::Pg(s) => sqlx::query_scalar(&sql).fetch_all(s.pool()).await.unwrap(),
            };
            out.extend(
                values
                    .into_iter()
                    .flatten()
                    .map(|v| (format!("{table}.{column}"), v)),
            );
        }
    }
    out
}

/// Where any of `needles` (ignoring case) occurs in `dump`.
fn naming(dump: &[(String, String)], needles: &[&str]) -> Vec<String> {
    dump.iter()
        .flat_map(|(at, v)| {
            let v = v.to_lowercase();
            needles
                .iter()
                .filter(move |n| v.contains(&n.to_lowercase()))
                .map(move |n| format!("{n} in {at}"))
        })
        .collect()
}

async fn a_dump_of_the_catalog_names_no_owner_yet_the_store_reads_them_back(kind: Kind) {
    on_backend(kind, |store, backend, raw| async move {
        seeded(&store).await;
        let ann = subject("owner-ann-5521");
        let ctx = AuditContext::request(&ann, Some("req-1".into()));
        let g = new_group(
            "Witness Support",
            "Confidential",
            JoinPolicy::Approval,
            ann.as_str(),
        );
        assert!(matches!(
            store.insert_group(&g, &ctx, T0).await.unwrap(),
            GroupInsert::Created(_)
        ));
        let contact = OwnerContact {
            name: Some("Ann Ownerly".into()),
            email: Some(Email::parse("ann.ownerly@corp.example").unwrap()),
        };
        store.note_owner_contact(&ann, &contact, T0).await.unwrap();
        // Confidential bars guests: Cobb is invited, not made owner (issue 15).
        let changes = GroupChanges {
            owners: Some(
                Owners::parse(vec![subject("owner-ann-5521"), subject("cobb-7730")]).unwrap(),
            ),
            ..GroupChanges::default()
        };
        let written = store
            .update_group(g.id, &ann, &changes, &ctx, T0)
            .await
            .unwrap();
        assert!(
            matches!(written, GroupWrite::Done(_)),
            "{backend}: {written:?}"
        );
        // A label-admin proposes loosening the label; the group's owner proposes a looser label.
        let mut looser = store
            .get_label(&label_name("Confidential"))
            .await
            .unwrap()
            .unwrap();
        looser.policy.guests_allowed = true;
        let lia = subject("label-admin-lia-4410");
        let proposed = store
            .update_label(&looser, &lia, &AuditContext::request(&lia, None), T0)
            .await
            .unwrap();
        assert!(
            matches!(proposed, LabelUpdate::Proposed(_)),
            "{backend}: {proposed:?}"
        );
        settle(&store, T0).await;
        let relabel = store
            .relabel_group(g.id, &label_name("General"), &ann, &ctx, T0)
            .await
            .unwrap();
        assert!(
            matches!(relabel, Relabel::Proposed(_)),
            "{backend}: {relabel:?}"
        );

        let found = naming(
            &dump(&raw).await,
            &[
                "owner-ann",
                "ann.ownerly",
                "Ownerly",
                "cobb-7730",
                "label-admin-lia",
            ],
        );
        assert!(
            found.is_empty(),
            "{backend}: a dump names owners: {found:?}"
        );

        // The store still reads them all back.
        let read = store.get_group(g.id).await.unwrap().unwrap();
        assert_eq!(
            read.owners.as_slice(),
            std::slice::from_ref(&ann),
            "{backend}"
        );
        assert_eq!(
            store.invited_owners(g.id).await.unwrap(),
            vec![subject("cobb-7730")]
        );
        assert_eq!(
            store
                .owner_contacts(std::slice::from_ref(&ann))
                .await
                .unwrap(),
            vec![(ann.clone(), contact)],
            "{backend}"
        );
        assert_eq!(
            store.owned_groups(&ann).await.unwrap().len(),
            1,
            "{backend}"
        );
        assert_eq!(
            store.pending_label_changes().await.unwrap()[0].proposed_by,
            lia
        );
        assert_eq!(store.pending_relabels().await.unwrap()[0].proposed_by, ann);
        let audit = store.catalog_audit(0, 100).await.unwrap();
        let created = audit.iter().find(|e| e.action == "group.created").unwrap();
        assert_eq!(
            created.actor.as_deref(),
            Some("owner-ann-5521"),
            "{backend}"
        );
        assert_eq!(created.detail["owners"][0], "owner-ann-5521", "{backend}");
        assert!(audit
            .iter()
            .any(|e| e.action == "group.owner-invited" && e.detail["subject"] == "cobb-7730"));
        // Owner checks find the sealed rows: Ann edits, Cobb (not yet an owner) does not.
        assert!(matches!(
            store
                .archive_group(g.id, &subject("cobb-7730"), &ctx, T0)
                .await
                .unwrap(),
            GroupWrite::NotOwner
        ));
        // And the schema refuses a clear owner outright.
        let clear = format!(
            "INSERT INTO group_owners (group_id, subject) VALUES ({}, 'mallory')",
            match raw {
                Raw::Sqlite(_) => format!("x'{}'", g.id.as_uuid().simple()),
                Raw::Pg(_) => format!("'{}'", g.id),
            }
        );
        assert!(
            raw.execute(&clear).await.is_err(),
            "{backend} took a clear owner"
        );
    })
    .await;
}

/// What a database written before owners were sealed holds: migrations 0001–0006 only, rows in
/// clear.
async fn legacy_database(kind: Kind) -> TestDatabase {
    let database = TestDatabase::new(kind).await;
    let upto = |m: &sqlx::migrate::Migrator| sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            m.migrations
                .iter()
                .filter(|m| m.version <= 6)
                .cloned()
                .collect(),
        ),
        ignore_missing: false,
        locking: m.locking,
        no_tx: m.no_tx,
    };
    let id = "0190d0c0-0000-7000-8000-000000000001";
    let rows = [
        "INSERT INTO labels VALUES ('General', 'g', true, true, 'open', 'anyone', 0, 0)",
        "INSERT INTO groups (id, name, description, contact_address, label, join_policy, state, \
         created_by, created_at, updated_at) VALUES (ID, 'Old', 'd', 'old@groups.test', \
         'General', 'open', 'active', 'old-owner-1180', 0, 0)",
        "INSERT INTO group_owners VALUES (ID, 'old-owner-1180')",
        "INSERT INTO owner_invitations VALUES (ID, 'old-invitee-2291', 'old-owner-1180', 0)",
        "INSERT INTO owner_contacts VALUES ('old-owner-1180', 'Olde Owner', 'olde@corp.example', 0)",
        "INSERT INTO catalog_audit (at_ms, actor, action, detail) \
         VALUES (0, 'old-owner-1180', 'group.created', '{\"owners\":[\"old-owner-1180\"]}')",
    ];
    match kind {
        Kind::Sqlite => {
            let pool = db::connect_sqlite(database.url(), 1).await.unwrap();
            upto(&MIGRATIONS.sqlite).run(&pool).await.unwrap();
            let id = format!("x'{}'", id.replace('-', ""));
            for r in rows {
                sqlx::query(&r.replace("ID", &id))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        }
        Kind::Postgres => {
            let pool = db::connect_postgres(database.url(), 1).await.unwrap();
            upto(&MIGRATIONS.postgres).run(&pool).await.unwrap();
            let id = format!("'{id}'");
            for r in rows {
                sqlx::query(&r.replace("ID", &id))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        }
    }
    database
}

async fn owner_rows_written_before_sealing_are_sealed_when_control_api_starts(kind: Kind) {
    let database = legacy_database(kind).await;
    let key = OwnerKey::random();
    let store = connect(database.url(), 2, key.clone()).await.unwrap();
    let id = GroupId::parse("0190d0c0-0000-7000-8000-000000000001").unwrap();
    assert_eq!(
        store
            .get_group(id)
            .await
            .unwrap()
            .unwrap()
            .owners
            .as_slice(),
        [subject("old-owner-1180")]
    );
    assert_eq!(
        store.invited_owners(id).await.unwrap(),
        vec![subject("old-invitee-2291")]
    );
    let (_, contact) = store
        .owner_contacts(&[subject("old-owner-1180")])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(contact.name.as_deref(), Some("Olde Owner"));
    assert_eq!(
        store
            .owned_groups(&subject("old-owner-1180"))
            .await
            .unwrap()
            .len(),
        1
    );
    // The append-only audit keeps its old row as it was, and reads it.
    let audit = store.catalog_audit(0, 10).await.unwrap();
    assert_eq!(audit[0].actor.as_deref(), Some("old-owner-1180"));
    drop(store);
    // Nothing else names the old owner or invitee any more.
    let raw = match kind {
        Kind::Sqlite => Raw::Sqlite(SqliteStore::new(
            SqlStore::migrate(db::connect_sqlite(database.url(), 1).await.unwrap())
                .await
                .unwrap(),
            key.clone(),
        )),
        Kind::Postgres => Raw::Pg(PgStore::new(
            SqlStore::migrate(db::connect_postgres(database.url(), 1).await.unwrap())
                .await
                .unwrap(),
            key.clone(),
        )),
    };
    let found: Vec<String> = naming(&dump(&raw).await, &["old-owner", "old-invitee", "Olde"])
        .into_iter()
        .filter(|at| !at.contains("in catalog_audit."))
        .collect();
    assert!(found.is_empty(), "{}: {found:?}", raw.backend());
    // A second start finds nothing left to seal.
    let again = match &raw {
        Raw::Sqlite(s) => s.seal_clear_rows().await.unwrap(),
        Raw::Pg(s) => s.seal_clear_rows().await.unwrap(),
    };
    assert_eq!(again, 0);
    match raw {
        Raw::Sqlite(s) => s.pool().close().await,
        Raw::Pg(s) => s.pool().close().await,
    }
    database.remove().await;
}

#[test]
fn like_patterns_escape_wildcards() {
    assert_eq!(like_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
    assert_eq!(like_pattern(""), "%%");
}

/// A group's own sender policy narrows its label's and never widens it: a wider choice is
/// refused at creation and in an edit; a label tightened later binds the group at once.
async fn a_groups_sender_policy_stays_within_its_label(kind: Kind) {
    on_backend(kind, |store, backend, _| async move {
        seeded(&store).await;
        let alice = subject("alice");
        let mut wide = new_group("Loud", "Highly Confidential", JoinPolicy::Invite, "alice");
        wide.sender_policy = Some(SenderPolicy::Anyone);
        assert!(
            matches!(
                store.insert_group(&wide, &sys(), T0).await.unwrap(),
                GroupInsert::SenderPolicyRefused(l) if l.name.as_str() == "Highly Confidential"
            ),
            "{backend}"
        );
        let mut quiet = new_group("Quiet", "General", JoinPolicy::Open, "alice");
        quiet.sender_policy = Some(SenderPolicy::Owners);
        let g = created(&store, &quiet).await;
        assert_eq!(g.own_sender_policy, Some(SenderPolicy::Owners), "{backend}");
        assert_eq!(g.sender_policy(), SenderPolicy::Owners, "{backend}");

        let hc = created(
            &store,
            &new_group("Hushed", "Highly Confidential", JoinPolicy::Invite, "alice"),
        )
        .await;
        assert_eq!(
            hc.sender_policy(),
            SenderPolicy::Members,
            "the label's rule"
        );
        let widen = GroupChanges {
            sender_policy: Some(SenderPolicy::Anyone),
            ..Default::default()
        };
        assert!(
            matches!(
                store
                    .update_group(hc.id, &alice, &widen, &sys(), T0)
                    .await
                    .unwrap(),
                GroupWrite::SenderPolicyRefused(_)
            ),
            "{backend}"
        );
        let after = store.get_group(hc.id).await.unwrap().unwrap();
        assert_eq!(after.own_sender_policy, None, "{backend}: nothing written");

        // General tightened to owners: a group that chose members... follows the label.
        let members_only = GroupChanges {
            sender_policy: Some(SenderPolicy::Members),
            ..Default::default()
        };
        store
            .update_group(g.id, &alice, &members_only, &sys(), T0 + 1)
            .await
            .unwrap();
        let mut general = Label::defaults().remove(0);
        general.policy.sender_policy = SenderPolicy::Owners;
        assert!(matches!(
            store
                .update_label(&general, &subject("lia"), &sys(), T0 + 2)
                .await
                .unwrap(),
            LabelUpdate::Updated(_)
        ));
        let tightened = store.get_group(g.id).await.unwrap().unwrap();
        assert_eq!(tightened.own_sender_policy, Some(SenderPolicy::Members));
        assert_eq!(tightened.sender_policy(), SenderPolicy::Owners, "{backend}");
    })
    .await;
}

service_kit::backend_tests!(
    a_groups_sender_policy_stays_within_its_label,
    a_dump_of_the_catalog_names_no_owner_yet_the_store_reads_them_back,
    owner_rows_written_before_sealing_are_sealed_when_control_api_starts,
    default_labels_are_seeded_once_and_admin_edits_and_deletions_stick,
    label_names_are_unique_ignoring_case,
    a_label_in_use_cannot_be_deleted_nor_drop_a_join_policy_a_live_group_uses,
    creating_a_group_checks_the_label_and_the_address,
    loosening_a_label_in_use_waits_for_a_second_label_admin,
    relabelling_to_a_stricter_label_applies_and_to_a_looser_one_waits,
    discovery_finds_active_groups_the_caller_may_enter_by_substring_in_pages,
    owners_edit_within_the_label_and_nobody_else_edits,
    the_saga_leases_one_group_to_one_worker_and_retries_after_failures,
    a_lease_that_runs_out_is_taken_over,
    archiving_while_provisioning_is_in_flight_waits_for_the_provisioning_call,
    concurrent_workers_never_hold_the_same_group,
    lookup_returns_the_groups_that_exist,
    the_schema_refuses_what_the_types_refuse,
    the_catalog_audit_records_the_context_it_is_given,
);
