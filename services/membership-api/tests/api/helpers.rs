//! Builds an app around the stand-ins, a fresh SQLite store and a dev issuer, and sends it
//! requests.

use crate::fakes::{FakeCatalog, FakeDirectory};
use auth::{DevClaims, DevIssuer};
use axum::body::Body;
use axum::Router;
use control_api::client::GroupPolicyView;
use domain::{Email, GroupId, GroupName, GroupState, IdentityKind, JoinPolicy, Label, Subject};
use http::{header, Method, Request, StatusCode};
use serde_json::Value;
use service_kit::HttpArgs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

/// The audience test tokens are minted for.
pub const AUDIENCE: &str = "hush";

/// A router under test, the stand-ins it talks to, and the issuer of its tokens.
pub struct TestApp {
    pub router: Router,
    pub issuer: DevIssuer,
    pub directory: Arc<FakeDirectory>,
    pub catalog: Arc<FakeCatalog>,
    dir: PathBuf,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A status, a content type and a JSON body (`Null` when empty).
pub type Answer = (StatusCode, String, Value);

pub async fn spawn_app() -> TestApp {
    service_kit::telemetry::init_for_test();
    let dir = std::env::temp_dir().join(format!(
        "hush-membership-test-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let issuer = DevIssuer::load_or_create(&dir.join("issuer")).unwrap();
    let store = membership_api::store::connect(
        &format!("sqlite://{}", dir.join("membership.db").display()),
        2,
    )
    .await
    .unwrap();
    let directory = Arc::new(FakeDirectory::default());
    let catalog = Arc::new(FakeCatalog::default());
    let state = membership_api::AppState {
        verifier: issuer.verifier(AUDIENCE).unwrap(),
        store,
        tenant: directory.clone(),
        catalog: catalog.clone(),
        http: HttpArgs::default(),
    };
    TestApp {
        router: membership_api::router(state),
        issuer,
        directory,
        catalog,
        dir,
    }
}

/// Someone calling, as their token describes them.
#[derive(Clone, Copy)]
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

impl TestApp {
    pub fn token(&self, who: Who) -> String {
        self.issuer.mint(
            &DevClaims {
                sub: who.sub.into(),
                email: who.with_email.then(|| format!("{}@corp.example", who.sub)),
                kind: who.kind,
                roles: Vec::new(),
            },
            AUDIENCE,
            Duration::from_secs(300),
        )
    }

    /// Puts a group in the catalog under the default label `label`.
    pub fn group(&self, label: &str, join_policy: JoinPolicy, state: GroupState) -> GroupId {
        let id = GroupId::new();
        let label: Label = Label::defaults()
            .into_iter()
            .find(|l| l.name.as_str() == label)
            .expect("a default label");
        self.catalog.insert(group_view(
            id,
            &format!("Group {id}"),
            label,
            join_policy,
            state,
        ));
        id
    }

    pub async fn send(&self, method: Method, path: &str, token: Option<&str>) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let res = self
            .router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let ctype = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, ctype, body)
    }

    pub async fn join(&self, who: Who, group: GroupId) -> Answer {
        let path = format!("/membership/v1/groups/{group}/join");
        self.send(Method::POST, &path, Some(&self.token(who))).await
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
}

/// A catalog entry as control-api answers it.
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
        owners: vec![Subject::parse("owner-1").unwrap()],
        contact_address: Email::parse(format!("g-{}@groups.test.example", id.as_uuid().simple()))
            .unwrap(),
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
