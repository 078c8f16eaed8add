//! The tenant as it runs: configured from key files on disk, served on a port-0 listener by
//! [`isolated_tenant::run`], and called through the real [`TenantClient`] of each service.
//! Proves the client and the server agree on the API, that the client's errors mean what its
//! callers expect, and that [`isolated_tenant::reseal`] lets an old seal key go.
//!
//! Each test runs on SQLite (`sqlite::…`) and on a fresh Postgres database (`postgres::…`,
//! ignored unless run with `--include-ignored` and `HUSH_TEST_POSTGRES_URL`).

use auth::ServiceSigner;
use domain::{CountBucket, Email, GroupId, GroupName, IdentityKind, Label, ServiceName, Subject};
use isolated_tenant::{Config, CorporateDomains, Redacted, ResealReport, SealKeys};
use service_kit::db::Backend;
use service_kit::testing::TestDatabase;
use service_kit::HttpArgs;
use std::net::SocketAddr;
use std::path::PathBuf;
use tenant_api::{AddMember, IdentityRef, MemberRef, ProvisionGroup};
use tenant_client::{TenantClient, TenantError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What outlives one run of the tenant: its database, the services' keys, the seal key file.
struct Setup {
    dir: tempfile::TempDir,
    keys: PathBuf,
    trusted: String,
    /// A fresh database on the backend under test.
    database: TestDatabase,
}

impl Setup {
    async fn new(backend: Backend) -> Self {
        service_kit::telemetry::init_for_test();
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let mut trusted = Vec::new();
        for s in [
            ServiceName::ControlApi,
            ServiceName::MembershipApi,
            ServiceName::BulkApi,
        ] {
            let files = auth::generate_service_key(&keys, s).unwrap();
            trusted.push(format!("{s}={}", files.public_key.display()));
        }
        isolated_tenant::generate_seal_keys_file(&keys.join("tenant-seal.keys")).unwrap();
        Self {
            dir,
            keys,
            trusted: trusted.join(","),
            database: TestDatabase::new(backend).await,
        }
    }

    /// The tenant's configuration, sealing with the key file `hush up` would write, or with
    /// `seal_keys` when given.
    fn config(&self, listen: SocketAddr, seal_keys: Option<&str>) -> Config {
        let (seal_keys, seal_keys_file) = match seal_keys {
            Some(text) => (Some(Redacted::new(text)), None),
            None => (None, Some(self.keys.join("tenant-seal.keys"))),
        };
        Config {
            listen,
            database_url: self.database.url().to_string().into(),
            trusted_service_keys: self.trusted.clone(),
            seal_keys,
            seal_keys_file,
            corporate_domains: "corp.example".parse::<CorporateDomains>().unwrap(),
            directory_sync: false,
            batch_concurrency: Some(2),
            http: HttpArgs::default(),
            audit: isolated_tenant::audit::AuditArgs::without_checkpoints(),
            break_glass: isolated_tenant::breakglass::BreakGlassArgs::disabled(),
            mail: isolated_tenant::mail::MailArgs::default(),
            notify: isolated_tenant::notify::NotifyArgs::default(),
        }
    }

    async fn finish(self) {
        self.database.remove().await;
        drop(self.dir);
    }

    /// How many identity and membership rows name the key `kid`.
    async fn rows_under(&self, kid: &str) -> i64 {
        let sql = "SELECT (SELECT COUNT(*) FROM identities WHERE key_id = $1) + \
                   (SELECT COUNT(*) FROM memberships WHERE key_id = $1)";
        if self.database.backend() == Backend::Postgres {
            let pool = service_kit::db::connect_postgres(self.database.url(), 1)
                .await
                .unwrap();
            let n = sqlx::query_scalar(sql)
                .bind(kid)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            n
        } else {
            let pool = service_kit::db::connect_sqlite(self.database.url(), 1)
                .await
                .unwrap();
            let n = sqlx::query_scalar(sql)
                .bind(kid)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            n
        }
    }
}

/// A running tenant and a client per public service.
struct Running {
    control: TenantClient,
    membership: TenantClient,
    bulk: TenantClient,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    async fn start(setup: &Setup, seal_keys: Option<&str>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = setup.config(addr, seal_keys);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(isolated_tenant::run(config, listener, async {
            let _ = rx.await;
        }));
        let client = |s| {
            TenantClient::new(
                format!("http://{addr}"),
                ServiceSigner::load(&setup.keys, s).unwrap(),
            )
            .unwrap()
        };
        let running = Self {
            control: client(ServiceName::ControlApi),
            membership: client(ServiceName::MembershipApi),
            bulk: client(ServiceName::BulkApi),
            addr,
            stop: Some(tx),
            task: Some(task),
        };
        // `run` migrates before it serves: wait until it answers.
        for _ in 0..500 {
            if running.control.ping().await.is_ok() {
                return running;
            }
            assert!(
                !running.task.as_ref().unwrap().is_finished(),
                "the tenant stopped during start-up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the tenant did not answer within 5 s");
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

fn provision_request(local: &str) -> ProvisionGroup {
    ProvisionGroup {
        group_id: GroupId::new(),
        address: Email::parse(format!("{local}@groups.test.example")).unwrap(),
        display_name: GroupName::parse(local).unwrap(),
        sender_policy: None,
        anonymous_posting: false,
        owners: Vec::new(),
        label: None,
        group_type: domain::GroupType::Mail,
    }
}

fn label(name: &str) -> Label {
    Label::defaults()
        .into_iter()
        .find(|l| l.name.as_str() == name)
        .unwrap()
}

fn alice_subject() -> Subject {
    Subject::parse("alice").unwrap()
}

/// Alice, a guest present with her token, joining a group labelled General.
fn alice() -> AddMember {
    AddMember {
        member: MemberRef::present(
            alice_subject(),
            Email::parse("alice@corp.example").unwrap(),
            IdentityKind::Guest,
        ),
        label: label("General"),
    }
}

/// Someone an owner adds by address to a group labelled `label_name`.
fn by_email(email: &str, label_name: &str) -> AddMember {
    AddMember {
        member: MemberRef {
            subject: None,
            email: Some(Email::parse(email).unwrap()),
            kind: None,
        },
        label: label(label_name),
    }
}

fn alice_ref() -> IdentityRef {
    IdentityRef::from(&alice_subject())
}

async fn the_client_drives_the_whole_membership_lifecycle(kind: Backend) {
    let setup = Setup::new(kind).await;
    let mut t = Running::start(&setup, None).await;
    let req = provision_request("lifecycle");
    let g = req.group_id;
    let made = t.control.provision_group(&req).await.unwrap();
    assert_eq!(made.group_id, g);
    assert_eq!(
        t.control.provision_group(&req).await.unwrap(),
        made,
        "idempotent"
    );

    t.membership.add_member(g, &alice()).await.unwrap();
    t.membership.add_member(g, &alice()).await.unwrap();
    assert!(t
        .membership
        .is_member(g, &alice_subject(), None, None)
        .await
        .unwrap());
    assert_eq!(
        t.membership
            .groups_of(&alice_subject(), None, None)
            .await
            .unwrap(),
        vec![g]
    );
    assert_eq!(
        t.control.member_count(g).await.unwrap(),
        CountBucket::Under10
    );

    t.membership.remove_member(g, &alice_ref()).await.unwrap();
    t.membership.remove_member(g, &alice_ref()).await.unwrap();
    assert!(!t
        .membership
        .is_member(g, &alice_subject(), None, None)
        .await
        .unwrap());

    t.membership.add_member(g, &alice()).await.unwrap();
    t.control.deprovision_group(g).await.unwrap();
    t.control.deprovision_group(g).await.unwrap();
    assert!(t
        .membership
        .groups_of(&alice_subject(), None, None)
        .await
        .unwrap()
        .is_empty());
    t.stop().await;
    setup.finish().await;
}

async fn owners_add_by_address_bulk_applies_and_control_offboards(kind: Backend) {
    let setup = Setup::new(kind).await;
    let mut t = Running::start(&setup, None).await;
    let (g1, g2) = (provision_request("addr-one"), provision_request("addr-two"));
    t.control.provision_group(&g1).await.unwrap();
    t.control.provision_group(&g2).await.unwrap();

    // An owner adds a newcomer by address (through membership-api), a bulk job another group.
    t.membership
        .add_member(
            g1.group_id,
            &by_email("newcomer@corp.example", "Confidential"),
        )
        .await
        .unwrap();
    t.bulk
        .add_member(g2.group_id, &by_email("newcomer@corp.example", "General"))
        .await
        .unwrap();
    // They sign in and ask for their groups: found by their token's address (the identity has
    // no subject yet), not by the subject alone, until a write with their token binds it.
    let newcomer = Subject::parse("newcomer").unwrap();
    let address = Email::parse("newcomer@corp.example").unwrap();
    let mut both = vec![g1.group_id, g2.group_id];
    both.sort();
    assert_eq!(
        t.membership
            .groups_of(&newcomer, Some(&address), None)
            .await
            .unwrap(),
        both
    );
    assert!(t
        .membership
        .is_member(g1.group_id, &newcomer, Some(&address), None)
        .await
        .unwrap());
    assert!(t
        .membership
        .groups_of(&newcomer, None, None)
        .await
        .unwrap()
        .is_empty());
    let join = AddMember {
        member: MemberRef {
            subject: Some(newcomer.clone()),
            email: Some(Email::parse("newcomer@corp.example").unwrap()),
            kind: Some(IdentityKind::Member),
        },
        label: label("General"),
    };
    t.membership.add_member(g2.group_id, &join).await.unwrap();
    assert_eq!(
        t.membership.groups_of(&newcomer, None, None).await.unwrap(),
        both
    );

    // They leave the company: out of every group at once.
    let who = IdentityRef {
        subject: Some(newcomer.clone()),
        email: None,
    };
    t.control.offboard(&who).await.unwrap();
    t.control.offboard(&who).await.unwrap();
    assert!(t
        .membership
        .groups_of(&newcomer, None, None)
        .await
        .unwrap()
        .is_empty());
    assert!(!t
        .membership
        .is_member(g1.group_id, &newcomer, None, None)
        .await
        .unwrap());

    // A guest address is refused by a label that does not admit guests, with the tenant's word.
    let refused = t
        .membership
        .add_member(
            g1.group_id,
            &by_email("vendor@partner.example", "Confidential"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        TenantError::LabelRefused("the label 'Confidential' does not allow guests".into())
    );
    // Naming nobody is refused as invalid.
    let nobody = t
        .membership
        .remove_member(g1.group_id, &IdentityRef::default())
        .await
        .unwrap_err();
    assert!(
        matches!(nobody, TenantError::Refused { status: 422, .. }),
        "{nobody:?}"
    );
    t.stop().await;
    setup.finish().await;
}

async fn client_errors_say_what_happened(kind: Backend) {
    let setup = Setup::new(kind).await;
    let mut t = Running::start(&setup, None).await;
    let req = provision_request("errors");
    t.control.provision_group(&req).await.unwrap();

    // 404: no such group.
    let missing = t
        .membership
        .add_member(GroupId::new(), &alice())
        .await
        .unwrap_err();
    assert!(matches!(missing, TenantError::NotFound(_)), "{missing:?}");
    // 409: the address is taken.
    let mut clash = provision_request("other");
    clash.address = req.address.clone();
    let taken = t.control.provision_group(&clash).await.unwrap_err();
    assert!(matches!(taken, TenantError::Conflict(_)), "{taken:?}");
    // 403: control-api may not add members, bulk-api may not offboard, with the tenant's detail.
    let refused = t
        .control
        .add_member(req.group_id, &alice())
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        TenantError::Refused {
            status: 403,
            detail: "control-api may not call add-member".into()
        }
    );
    assert!(!refused.is_retryable());
    let refused = t.bulk.offboard(&alice_ref()).await.unwrap_err();
    assert_eq!(
        refused,
        TenantError::Refused {
            status: 403,
            detail: "bulk-api may not call offboard".into()
        }
    );
    t.bulk.ping().await.unwrap();

    // Down: unavailable, retryable, and the message holds no URL (it would carry a group id).
    t.stop().await;
    let down = t
        .membership
        .is_member(req.group_id, &alice_subject(), None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(down, TenantError::Unavailable(_)) && down.is_retryable(),
        "{down:?}"
    );
    let text = down.to_string();
    assert!(
        !text.contains(&req.group_id.to_string()) && !text.contains(&t.addr.to_string()),
        "{text}"
    );
    setup.finish().await;
}

/// The rotation an operator runs: seal with k1; configure k2 (active) and k1; reseal; drop k1.
async fn reseal_lets_the_old_seal_key_go(kind: Backend) {
    let setup = Setup::new(kind).await;
    let k1 = SealKeys::generate_text();
    let k2 = SealKeys::generate_text();
    let kid = |text: &str| text.split(':').next().unwrap().to_string();
    let (g1, g2) = (provision_request("rot-one"), provision_request("rot-two"));

    let mut t = Running::start(&setup, Some(&k1)).await;
    t.control.provision_group(&g1).await.unwrap();
    t.control.provision_group(&g2).await.unwrap();
    t.membership
        .add_member(g1.group_id, &alice())
        .await
        .unwrap();
    t.membership
        .add_member(g2.group_id, &alice())
        .await
        .unwrap();
    t.membership
        .add_member(g1.group_id, &by_email("bob@corp.example", "General"))
        .await
        .unwrap();
    t.stop().await;

    let both = format!("{},{}", k2.as_str(), k1.as_str());
    let listen = "127.0.0.1:0".parse().unwrap();
    let report = isolated_tenant::reseal(&setup.config(listen, Some(&both)))
        .await
        .unwrap();
    assert_eq!(
        report,
        ResealReport {
            identities: 2,
            memberships: 3
        }
    );
    // Safe to run again: nothing is left under k1.
    let again = isolated_tenant::reseal(&setup.config(listen, Some(&both)))
        .await
        .unwrap();
    assert_eq!(again, ResealReport::default());
    assert_eq!(setup.rows_under(&kid(&k1)).await, 0, "no row has key id k1");
    assert_eq!(setup.rows_under(&kid(&k2)).await, 5);

    // k1 dropped: everything is still found.
    let mut t = Running::start(&setup, Some(&k2)).await;
    let mut groups = vec![g1.group_id, g2.group_id];
    groups.sort();
    assert_eq!(
        t.membership
            .groups_of(&alice_subject(), None, None)
            .await
            .unwrap(),
        groups
    );
    assert!(t
        .membership
        .is_member(g1.group_id, &alice_subject(), None, None)
        .await
        .unwrap());
    t.membership
        .add_member(g1.group_id, &alice())
        .await
        .unwrap();
    t.membership
        .add_member(g1.group_id, &by_email("bob@corp.example", "General"))
        .await
        .unwrap();
    assert_eq!(setup.rows_under(&kid(&k2)).await, 5, "adds stay idempotent");
    t.membership
        .remove_member(g2.group_id, &alice_ref())
        .await
        .unwrap();
    assert_eq!(
        t.membership
            .groups_of(&alice_subject(), None, None)
            .await
            .unwrap(),
        vec![g1.group_id]
    );
    assert_eq!(
        t.control.member_count(g1.group_id).await.unwrap(),
        CountBucket::Under10
    );
    t.stop().await;
    setup.finish().await;
}

service_kit::backend_tests!(
    the_client_drives_the_whole_membership_lifecycle,
    owners_add_by_address_bulk_applies_and_control_offboards,
    client_errors_say_what_happened,
    reseal_lets_the_old_seal_key_go,
);
