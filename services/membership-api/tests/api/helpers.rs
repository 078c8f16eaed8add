//! Builds an app around the stand-ins, a fresh SQLite store and a dev issuer, and sends it
//! requests.

use crate::fakes::{FakeCatalog, FakeClock, FakeDirectory};
use auth::{DevIssuer, DEV_ISSUER};
use axum::Router;
use control_client::GroupPolicyView;
use domain::{Email, GroupId, GroupName, GroupState, IdentityKind, JoinPolicy, Label, Subject};
use http::{header, HeaderMap, Method, StatusCode};
use membership_api::{AbuseLimits, RateLimiter};
use serde_json::{json, Value};
use service_kit::HttpArgs;
use std::path::PathBuf;
use std::sync::Arc;

/// The audience test tokens are minted for.
pub const AUDIENCE: &str = "hush";

/// When every test's clock starts: 2025-01-01T00:00:00Z.
pub const T0: i64 = 1_735_689_600_000;

/// A router under test, the stand-ins it talks to, and the issuer of its tokens.
pub struct TestApp {
    pub router: Router,
    pub issuer: DevIssuer,
    pub directory: Arc<FakeDirectory>,
    pub catalog: Arc<FakeCatalog>,
    pub clock: Arc<FakeClock>,
    pub dir: PathBuf,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A status, a content type and a JSON body (`Null` when empty).
pub type Answer = (StatusCode, String, Value);

/// An answer as it came over the wire: status, headers, body bytes.
#[derive(Debug)]
pub struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Raw {
    /// Status, content type and body bytes: what must be identical when an answer may not
    /// reveal anything (the request id header differs on every request by design).
    pub fn visible(&self) -> (StatusCode, String, String) {
        (
            self.status,
            self.content_type(),
            String::from_utf8(self.body.clone()).unwrap(),
        )
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    pub fn answer(&self) -> Answer {
        let body = if self.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&self.body).unwrap()
        };
        (self.status, self.content_type(), body)
    }
}

/// Where a test app's decision key is: written before the app starts, so a test can read
/// the public half the app publishes.
pub fn decision_key(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("decision.key.pem");
    membership_api::generate_decision_key_file(&path).unwrap();
    path
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AbuseLimits::default()).await
}

pub async fn spawn_app_with(limits: AbuseLimits) -> TestApp {
    service_kit::telemetry::init_for_test();
    let dir = std::env::temp_dir().join(format!(
        "hush-membership-test-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let issuer = DevIssuer::load_or_create(&dir.join("issuer")).unwrap();
    let key = membership_api::RequestKey::random();
    let store = membership_api::store::connect(
        &format!("sqlite://{}", dir.join("membership.db").display()),
        2,
        key.clone(),
    )
    .await
    .unwrap();
    let limits = RateLimiter::new(&limits, store.limit_table(), &key);
    let directory = Arc::new(FakeDirectory::default());
    let catalog = Arc::new(FakeCatalog::default());
    let clock = Arc::new(FakeClock::new(T0));
    let state = membership_api::AppState {
        verifier: issuer.verifier(AUDIENCE).unwrap(),
        store,
        tenant: directory.clone(),
        catalog: catalog.clone(),
        routine_catalog: catalog.clone(),
        http: HttpArgs::default(),
        limits: Arc::new(limits),
        clock: clock.clone(),
        decisions: Arc::new(
            membership_api::decision_settings(&membership_api::DecisionArgs {
                decision_key_file: Some(decision_key(&dir)),
                ..membership_api::DecisionArgs::default()
            })
            .unwrap(),
        ),
        metrics: Default::default(),
    };
    TestApp {
        router: membership_api::router(state),
        issuer,
        directory,
        catalog,
        clock,
        dir,
    }
}

/// Someone calling, as their token describes them.
#[derive(Clone, Copy, Debug)]
pub struct Who {
    pub sub: &'static str,
    pub kind: IdentityKind,
    pub with_email: bool,
}

pub const ALICE: Who = Who {
    sub: "alice",
    kind: IdentityKind::Member,
    with_email: true,
};
pub const BOB: Who = Who {
    sub: "bob",
    kind: IdentityKind::Member,
    with_email: true,
};
pub const CAROL: Who = Who {
    sub: "carol",
    kind: IdentityKind::Member,
    with_email: true,
};
pub const GINA_GUEST: Who = Who {
    sub: "gina",
    kind: IdentityKind::Guest,
    with_email: true,
};
pub const AIDA_AGENT: Who = Who {
    sub: "aida",
    kind: IdentityKind::Agent,
    with_email: true,
};
/// The owner of every group [`TestApp::group`] makes.
pub const OWNER: Who = Who {
    sub: "owner-1",
    kind: IdentityKind::Member,
    with_email: true,
};
/// An owner of no group.
pub const MALLORY: Who = Who {
    sub: "mallory",
    kind: IdentityKind::Member,
    with_email: true,
};

/// A default label by name.
pub fn label(name: &str) -> Label {
    Label::defaults()
        .into_iter()
        .find(|l| l.name.as_str() == name)
        .expect("a default label")
}

impl TestApp {
    /// Asserts that a join or redemption answered "alice is a member of `g`" (200), and that
    /// the tenant was told exactly one thing: add alice, a member, to `g` under `label`.
    pub fn assert_alice_admitted(&self, status: StatusCode, body: &Value, g: GroupId, label: &str) {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, &json!({ "group_id": g.to_string(), "member": true }));
        assert_eq!(
            self.directory.writes(),
            [crate::fakes::Write::add_self(
                g,
                "alice",
                IdentityKind::Member,
                label
            )]
        );
    }

    pub fn token(&self, who: Who) -> String {
        self.token_with(who, &json!({}))
    }

    /// A dev-issuer token for `who` carrying `extra` claims too (e.g. department), signed with
    /// the issuer's own key so the service verifies it like any other.
    pub fn token_with(&self, who: Who, extra: &Value) -> String {
        let now = T0 / 1000;
        // Real time for exp: the verifier checks it against the system clock.
        let real_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({
            "iss": DEV_ISSUER,
            "sub": who.sub,
            "aud": AUDIENCE,
            "iat": now,
            "exp": real_now + 300,
            "hush_kind": who.kind.as_str(),
            "roles": [],
        });
        if who.with_email {
            claims["email"] = json!(format!("{}@corp.example", who.sub));
        }
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let pem = std::fs::read(self.issuer.key_path()).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.issuer.kid().to_string());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    /// Puts a group owned by [`OWNER`] in the catalog under the default label `label`.
    pub fn group(&self, label_name: &str, join_policy: JoinPolicy, state: GroupState) -> GroupId {
        let id = GroupId::new();
        self.catalog.insert(group_view(
            id,
            &format!("Group {id}"),
            label(label_name),
            join_policy,
            state,
        ));
        id
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Raw {
        let req = service_kit::testing::request(method, path, token, body);
        let reply = service_kit::testing::send(&self.router, req).await;
        let (status, headers, body) = (reply.status, reply.headers, reply.body.to_vec());
        Raw {
            status,
            headers,
            body,
        }
    }

    pub async fn send(&self, method: Method, path: &str, token: Option<&str>) -> Answer {
        self.raw(method, path, token, None).await.answer()
    }

    /// `who` sends `body` (JSON) to `path`.
    pub async fn call(&self, who: Who, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.raw(method, path, Some(&self.token(who)), body.as_ref())
            .await
            .answer()
    }

    pub async fn join(&self, who: Who, group: GroupId) -> Answer {
        let path = format!("/membership/v1/groups/{group}/join");
        self.send(Method::POST, &path, Some(&self.token(who))).await
    }

    /// `who` asks to join, with `claims` in their token.
    pub async fn join_with(&self, who: Who, group: GroupId, claims: &Value) -> Answer {
        let path = format!("/membership/v1/groups/{group}/join");
        self.send(Method::POST, &path, Some(&self.token_with(who, claims)))
            .await
    }

    pub async fn leave(&self, who: Who, group: GroupId) -> Answer {
        let path = format!("/membership/v1/groups/{group}/leave");
        self.send(Method::POST, &path, Some(&self.token(who))).await
    }

    pub async fn am_i(&self, who: Who, group: GroupId) -> Answer {
        let path = format!("/membership/v1/groups/{group}/me");
        self.send(Method::GET, &path, Some(&self.token(who))).await
    }

    pub async fn my_groups(&self, who: Who) -> Answer {
        self.send(
            Method::GET,
            "/membership/v1/me/groups",
            Some(&self.token(who)),
        )
        .await
    }

    pub async fn my_requests(&self, who: Who) -> Answer {
        self.call(who, Method::GET, "/membership/v1/me/requests", None)
            .await
    }

    pub async fn pending(&self, who: Who, group: GroupId) -> Answer {
        let path = format!("/membership/v1/groups/{group}/requests");
        self.call(who, Method::GET, &path, None).await
    }

    pub async fn decide(&self, who: Who, group: GroupId, rid: &str, verb: &str) -> Answer {
        let path = format!("/membership/v1/groups/{group}/requests/{rid}/{verb}");
        self.call(who, Method::POST, &path, None).await
    }

    pub async fn put_rules(&self, who: Who, group: GroupId, rules: Value) -> Answer {
        let path = format!("/membership/v1/groups/{group}/claim-rules");
        self.call(who, Method::PUT, &path, Some(rules)).await
    }

    pub async fn create_invite(&self, who: Who, group: GroupId, body: Value) -> Answer {
        let path = format!("/membership/v1/groups/{group}/invites");
        self.call(who, Method::POST, &path, Some(body)).await
    }

    pub async fn invites(&self, who: Who, group: GroupId) -> Answer {
        let path = format!("/membership/v1/groups/{group}/invites");
        self.call(who, Method::GET, &path, None).await
    }

    pub async fn redeem_raw(&self, who: Who, code: &str) -> Raw {
        self.raw(
            Method::POST,
            "/membership/v1/invites/redeem",
            Some(&self.token(who)),
            Some(&json!({ "code": code })),
        )
        .await
    }

    pub async fn redeem(&self, who: Who, code: &str) -> Answer {
        self.redeem_raw(who, code).await.answer()
    }

    /// The rows of `sql` (one text column) in the service's own database.
    pub async fn db_texts(&self, sql: &str) -> Vec<Option<String>> {
        let pool = sqlx::SqlitePool::connect(&format!(
            "sqlite://{}",
            self.dir.join("membership.db").display()
        ))
        .await
        .unwrap();
        let rows: Vec<(Option<String>,)> = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows.into_iter().map(|(v,)| v).collect()
    }

    /// Rows in one of the service's tables.
    pub async fn db_count(&self, table: &str) -> usize {
        self.db_texts(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table}"))
            .await[0]
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// A catalog entry as control-api answers it, owned by [`OWNER`].
pub fn group_view(
    id: GroupId,
    name: &str,
    label: Label,
    join_policy: JoinPolicy,
    state: GroupState,
) -> GroupPolicyView {
    GroupPolicyView {
        id,
        name: GroupName::parse(name).unwrap(),
        state,
        label,
        join_policy,
        owners: vec![Subject::parse(OWNER.sub).unwrap()],
        group_type: domain::GroupType::Mail,
        contact_address: Some(
            Email::parse(format!("g-{}@groups.test.example", id.as_uuid().simple())).unwrap(),
        ),
    }
}

/// Asserts a problem+json answer of `status` and `type` slug.
pub fn assert_problem(got: &Answer, status: StatusCode, slug: &str) {
    let (s, ctype, body) = got;
    assert_eq!(*s, status, "body: {body}");
    assert_eq!(ctype, "application/problem+json", "body: {body}");
    assert_eq!(
        body["type"],
        format!("urn:hush:problem:{slug}"),
        "body: {body}"
    );
    assert_eq!(body["status"], status.as_u16());
}
