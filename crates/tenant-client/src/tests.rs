//! The client against a stand-in tenant that answers whatever status a test asks for and
//! records what it was sent: the token and headers each request carries, and how every kind of
//! answer becomes a [`TenantError`]. (The real tenant is exercised by the isolated-tenant
//! crate's API tests.)

use super::*;
use auth::ServiceVerifier;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use axum::Router;
use domain::{Email, IdentityKind, Label};
use std::sync::{Arc, Mutex};
use tenant_api::{BatchOp, BatchOpKind, MemberRef};

/// What the stand-in answers next, and what it saw.
#[derive(Clone, Default)]
struct Stand {
    answer: Arc<Mutex<(u16, String, &'static str)>>,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    delay_ms: Arc<Mutex<u64>>,
}

async fn answer(State(stand): State<Stand>, req: Request) -> Response {
    stand
        .seen
        .lock()
        .unwrap()
        .push((req.uri().path().to_string(), req.headers().clone()));
    let delay = *stand.delay_ms.lock().unwrap();
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let (status, body, ctype) = stand.answer.lock().unwrap().clone();
    (
        AxumStatus::from_u16(status).unwrap(),
        [(axum::http::header::CONTENT_TYPE, ctype)],
        body,
    )
        .into_response()
}

impl Stand {
    fn set(&self, status: u16, body: &str, ctype: &'static str) {
        *self.answer.lock().unwrap() = (status, body.to_string(), ctype);
    }

    fn problem(&self, status: u16, detail: &str) {
        let body = format!(
            r#"{{"type":"urn:hush:problem:x","title":"X","status":{status},"detail":"{detail}"}}"#
        );
        self.set(status, &body, "application/problem+json");
    }
}

async fn stand_in() -> (Stand, String) {
    let stand = Stand::default();
    stand.set(204, "", "text/plain");
    let app = Router::new().fallback(answer).with_state(stand.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (stand, url)
}

fn signer() -> ServiceSigner {
    ServiceSigner::generate(ServiceName::MembershipApi).unwrap()
}

fn alice_subject() -> Subject {
    Subject::parse("alice").unwrap()
}

fn alice() -> AddMember {
    AddMember {
        member: MemberRef::present(
            alice_subject(),
            Email::parse("alice@corp.example").unwrap(),
            IdentityKind::Member,
        ),
        label: Label::defaults().remove(0),
    }
}

#[tokio::test]
async fn every_request_carries_a_fresh_service_token_for_the_tenant_and_nothing_else() {
    let (stand, url) = stand_in().await;
    let signer = signer();
    let verifier = ServiceVerifier::new(ServiceName::IsolatedTenant)
        .trust(ServiceName::MembershipApi, signer.public_key_pem())
        .unwrap();
    let client = TenantClient::new(url, signer).unwrap();
    let group = GroupId::new();
    client.add_member(group, &alice()).await.unwrap();
    client
        .remove_member(group, &IdentityRef::from(&alice().member))
        .await
        .unwrap();
    client
        .offboard(&IdentityRef::from(&alice_subject()))
        .await
        .unwrap();

    let seen = stand.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].0, paths::OFFBOARD);
    let mut token_ids = Vec::new();
    for (path, headers) in &seen {
        assert!(
            !path.contains("alice"),
            "subjects travel in bodies only: {path}"
        );
        let token = headers["authorization"]
            .to_str()
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap();
        let caller = verifier
            .verify(token)
            .expect("a valid token for the tenant");
        assert_eq!(caller.service, ServiceName::MembershipApi);
        token_ids.push(caller.token_id);
        for name in headers.keys() {
            assert!(
                [
                    "host",
                    "authorization",
                    "content-type",
                    "content-length",
                    "accept"
                ]
                .contains(&name.as_str()),
                "unexpected header {name}"
            );
        }
    }
    // One token, reused for at most half its life (auth::SERVICE_TOKEN_REUSE_SECS): signed
    // once, verified once.
    assert!(
        token_ids.windows(2).all(|w| w[0] == w[1]),
        "the token is reused within its window: {token_ids:?}"
    );
}

#[tokio::test]
async fn statuses_map_to_errors_callers_can_act_on() {
    let (stand, url) = stand_in().await;
    let client = TenantClient::new(url, signer()).unwrap();
    let group = GroupId::new();
    type Expect = fn(&TenantError) -> bool;
    let cases: [(u16, Expect); 8] = [
        (
            500,
            |e| matches!(e, TenantError::Unavailable(r) if r == "status 500"),
        ),
        (502, |e| matches!(e, TenantError::Unavailable(_))),
        (503, |e| matches!(e, TenantError::Unavailable(_))),
        (
            429,
            |e| matches!(e, TenantError::Unavailable(r) if r == "status 429"),
        ),
        (
            404,
            |e| matches!(e, TenantError::NotFound(d) if d == "the detail"),
        ),
        (
            409,
            |e| matches!(e, TenantError::Conflict(d) if d == "the detail"),
        ),
        (403, |e| {
            *e == TenantError::Refused {
                status: 403,
                detail: "the detail".into(),
            }
        }),
        (422, |e| {
            *e == TenantError::Refused {
                status: 422,
                detail: "the detail".into(),
            }
        }),
    ];
    for (status, expected) in cases {
        stand.problem(status, "the detail");
        let err = client.add_member(group, &alice()).await.unwrap_err();
        assert!(expected(&err), "{status}: {err:?}");
        assert_eq!(
            err.is_retryable(),
            status >= 500 || status == 429,
            "{status}"
        );
    }
    // A label refusal is told apart from any other 403 by its problem type.
    stand.set(
        403,
        r#"{"type":"urn:hush:problem:label-refused","title":"Label refused","status":403,"detail":"the label 'Confidential' does not allow guests"}"#,
        "application/problem+json",
    );
    let err = client.add_member(group, &alice()).await.unwrap_err();
    assert_eq!(
        err,
        TenantError::LabelRefused("the label 'Confidential' does not allow guests".into())
    );
    assert!(!err.is_retryable());
    // A 4xx without a problem body still says something.
    stand.set(401, "", "text/plain");
    let err = client.ping().await.unwrap_err();
    assert_eq!(
        err,
        TenantError::Refused {
            status: 401,
            detail: "Unauthorized".into()
        }
    );
}

#[tokio::test]
async fn answers_are_decoded_and_a_wrong_shape_is_unexpected() {
    let (stand, url) = stand_in().await;
    let client = TenantClient::new(url, signer()).unwrap();
    let group = GroupId::new();
    stand.set(200, r#"{"member":true}"#, "application/json");
    let email = alice().member.email;
    assert!(client
        .is_member(group, &alice_subject(), email.as_ref(), None)
        .await
        .unwrap());
    stand.set(200, r#"{"bucket":"10-49"}"#, "application/json");
    assert_eq!(
        client.member_count(group).await.unwrap(),
        CountBucket::From10To49
    );
    stand.set(200, r#"{"groups":[]}"#, "application/json");
    assert!(client
        .groups_of(&alice_subject(), email.as_ref(), None)
        .await
        .unwrap()
        .is_empty());
    assert!(client
        .groups_of(&alice_subject(), None, None)
        .await
        .unwrap()
        .is_empty());
    stand.set(200, r#"{"something":"else"}"#, "application/json");
    let err = client
        .is_member(group, &alice_subject(), None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, TenantError::Unexpected(_)), "{err:?}");
}

#[tokio::test]
async fn a_tenant_that_is_down_or_slow_is_unavailable_and_no_url_leaks() {
    // Nothing listens on this port once the listener is dropped.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let group = GroupId::new();
    let down = TenantClient::new(format!("http://{addr}"), signer()).unwrap();
    let err = down.add_member(group, &alice()).await.unwrap_err();
    assert!(matches!(err, TenantError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains(&group.to_string()), "{err}");

    let (stand, url) = stand_in().await;
    *stand.delay_ms.lock().unwrap() = 500;
    let slow = TenantClient::with_timeouts(
        url,
        signer(),
        Duration::from_secs(1),
        Duration::from_millis(50),
    )
    .unwrap();
    let err = slow.add_member(group, &alice()).await.unwrap_err();
    assert_eq!(err, TenantError::Unavailable("timed out".into()));
}

#[test]
fn only_http_urls_are_accepted() {
    assert!(matches!(
        TenantClient::new("ftp://tenant", signer()),
        Err(TenantError::Unexpected(_))
    ));
    let c = TenantClient::new("http://tenant:8083/", signer()).unwrap();
    assert_eq!(c.base_url(), "http://tenant:8083");
    assert!(!format!("{c:?}").contains("PRIVATE"));
}

#[tokio::test]
async fn a_batch_answers_counts_and_a_saturated_tenant_is_busy_not_an_error() {
    let (stand, url) = stand_in().await;
    let client = TenantClient::new(url, signer()).unwrap();
    let batch = ApplyBatch {
        ops: vec![BatchOp {
            op: BatchOpKind::Add,
            group_id: GroupId::new(),
            subject: Some(alice_subject()),
            email: None,
        }],
        labels: vec![],
    };
    stand.set(
        200,
        r#"{"applied":1,"unknown_identity":0,"label_refused":0,"unknown_group":0}"#,
        "application/json",
    );
    let outcome = client.apply_batch(&batch).await.unwrap();
    assert_eq!((outcome.applied, outcome.rejected()), (1, 0));
    assert_eq!(stand.seen.lock().unwrap()[0].0, paths::GROUPS_BATCH);
    for status in [429, 503] {
        stand.problem(status, "busy");
        let err = client.apply_batch(&batch).await.unwrap_err();
        assert_eq!(err, BatchError::Busy { retry_after: None });
        assert!(err.is_retryable());
    }
    stand.problem(403, "bulk-api only");
    let err = client.apply_batch(&batch).await.unwrap_err();
    assert!(matches!(
        err,
        BatchError::Tenant(TenantError::Refused { status: 403, .. })
    ));
    assert!(!err.is_retryable());
}
