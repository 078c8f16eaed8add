//! The tenant as it runs: configured from key files on disk, served on a port-0 listener by
//! [`isolated_tenant::run`], and called through the real [`TenantClient`] of each service.
//! Proves the client and the server agree on the API, and that the client's errors mean what
//! its callers expect.

use auth::ServiceSigner;
use domain::{CountBucket, Email, GroupId, GroupName, IdentityKind, ServiceName, Subject};
use isolated_tenant::Config;
use service_kit::HttpArgs;
use std::net::SocketAddr;
use tenant_client::{MemberRef, ProvisionGroup, TenantClient, TenantError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running tenant and a client per public service.
struct Running {
    control: TenantClient,
    membership: TenantClient,
    bulk: TenantClient,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// The Postgres database to drop at the end (admin URL, name), when on Postgres.
    postgres: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start() -> Self {
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
        let seal = keys.join("tenant-seal.keys");
        isolated_tenant::generate_seal_keys_file(&seal).unwrap();
        let (database_url, postgres) = match std::env::var("HUSH_TEST_POSTGRES_URL") {
            // The same suite on Postgres: a fresh database for this test.
            Ok(admin) => {
                let (url, name) = fresh_postgres(&admin).await;
                (url, Some((admin, name)))
            }
            Err(_) => (
                format!("sqlite://{}", dir.path().join("tenant.db").display()),
                None,
            ),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config {
            listen: addr,
            database_url,
            trusted_service_keys: trusted.join(","),
            seal_keys: None,
            seal_keys_file: Some(seal),
            http: HttpArgs::default(),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(isolated_tenant::run(config, listener, async {
            let _ = rx.await;
        }));
        let client = |s| {
            TenantClient::new(
                format!("http://{addr}"),
                ServiceSigner::load(&keys, s).unwrap(),
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
            postgres,
            _dir: dir,
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
        if let Some((admin_url, name)) = self.postgres.take() {
            let admin = service_kit::db::connect_postgres(&admin_url, 1)
                .await
                .unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

/// Creates `hush_t_<hex>` next to the admin database and returns its URL and name.
async fn fresh_postgres(admin_url: &str) -> (String, String) {
    let name = format!("hush_t_{}", uuid::Uuid::new_v4().simple());
    let admin = service_kit::db::connect_postgres(admin_url, 1)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    (format!("{base}/{name}"), name)
}

fn provision_request(local: &str) -> ProvisionGroup {
    ProvisionGroup {
        group_id: GroupId::new(),
        address: Email::parse(format!("{local}@groups.test.example")).unwrap(),
        display_name: GroupName::parse(local).unwrap(),
    }
}

fn alice() -> MemberRef {
    MemberRef {
        subject: Subject::parse("alice").unwrap(),
        email: Email::parse("alice@corp.example").unwrap(),
        kind: IdentityKind::Guest,
    }
}

#[tokio::test]
async fn the_client_drives_the_whole_membership_lifecycle() {
    let mut t = Running::start().await;
    let req = provision_request("lifecycle");
    let g = req.group_id;
    let made = t.control.provision_group(&req).await.unwrap();
    assert_eq!(made.group_id, g);
    assert_eq!(
        t.control.provision_group(&req).await.unwrap(),
        made,
        "idempotent"
    );

    let who = alice();
    t.membership.add_member(g, who.clone()).await.unwrap();
    t.membership.add_member(g, who.clone()).await.unwrap();
    assert!(t.membership.is_member(g, &who.subject).await.unwrap());
    assert_eq!(t.membership.groups_of(&who.subject).await.unwrap(), vec![g]);
    assert_eq!(
        t.control.member_count(g).await.unwrap(),
        CountBucket::Under10
    );

    t.membership.remove_member(g, &who.subject).await.unwrap();
    t.membership.remove_member(g, &who.subject).await.unwrap();
    assert!(!t.membership.is_member(g, &who.subject).await.unwrap());

    t.membership.add_member(g, who.clone()).await.unwrap();
    t.control.deprovision_group(g).await.unwrap();
    t.control.deprovision_group(g).await.unwrap();
    assert!(t
        .membership
        .groups_of(&who.subject)
        .await
        .unwrap()
        .is_empty());
    t.stop().await;
}

#[tokio::test]
async fn client_errors_say_what_happened() {
    let mut t = Running::start().await;
    let req = provision_request("errors");
    t.control.provision_group(&req).await.unwrap();

    // 404: no such group.
    let missing = t
        .membership
        .add_member(GroupId::new(), alice())
        .await
        .unwrap_err();
    assert!(matches!(missing, TenantError::NotFound(_)), "{missing:?}");
    // 409: the address is taken.
    let mut clash = provision_request("other");
    clash.address = req.address.clone();
    let taken = t.control.provision_group(&clash).await.unwrap_err();
    assert!(matches!(taken, TenantError::Conflict(_)), "{taken:?}");
    // 403: bulk-api may not add members (yet), with the tenant's detail.
    let refused = t.bulk.add_member(req.group_id, alice()).await.unwrap_err();
    assert_eq!(
        refused,
        TenantError::Refused {
            status: 403,
            detail: "bulk-api may not call add-member".into()
        }
    );
    assert!(!refused.is_retryable());
    t.bulk.ping().await.unwrap();

    // Down: unavailable, retryable, and the message holds no URL (it would carry a group id).
    t.stop().await;
    let down = t
        .membership
        .is_member(req.group_id, &alice().subject)
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
}
