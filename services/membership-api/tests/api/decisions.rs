//! Access decisions for apps: token exchange and assertions, about the presenting person only.

use crate::helpers::*;
use base64::Engine as _;
use control_client::{RelyingPartyView, ResourceView, Uuid};
use domain::{GroupId, GroupState, Guard, JoinPolicy};
use http::{header, Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use membership_api::{AbuseLimits, DecisionClaims, TOKEN_EXCHANGE_GRANT};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const SECRET: &str = "app-secret-0123456789";
const AUD: &str = "https://reports.corp.example";

/// An app whose resource `report` (Confidential) is guarded by `group`.
fn register(app: &TestApp, group: GroupId, audience: &str) -> RelyingPartyView {
    let view = RelyingPartyView {
        id: Uuid::new_v4(),
        name: "Reports".into(),
        audience: audience.into(),
        credential_sha256: Sha256::digest(SECRET.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        enabled: true,
        resources: vec![ResourceView {
            id: Uuid::new_v4(),
            name: "report".into(),
            label: label("Confidential"),
            groups: vec![Guard {
                group,
                state: GroupState::Active,
                label: label("Confidential"),
            }],
        }],
    };
    app.catalog.insert_app(view.clone());
    view
}

fn basic(id: Uuid, secret: &str) -> String {
    let pair = format!("{id}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn form(subject_token: &str) -> String {
    format!(
        "grant_type={}&subject_token={subject_token}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token",
        urlencode(TOKEN_EXCHANGE_GRANT)
    )
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A")
}

impl TestApp {
    async fn exchange(&self, authorization: Option<&str>, body: String) -> Raw {
        let mut req = http::Request::builder()
            .method(Method::POST)
            .uri("/membership/v1/decisions/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let reply = service_kit::testing::send(
            &self.router,
            req.body(axum::body::Body::from(body)).unwrap(),
        )
        .await;
        Raw {
            status: reply.status,
            headers: reply.headers,
            body: reply.body.to_vec(),
        }
    }

    /// The decision's claims, checked with the JWKS the service publishes and `audience`.
    async fn verify(&self, token: &str, audience: &str) -> Result<DecisionClaims, String> {
        let (status, _, jwks) = self
            .send(Method::GET, "/membership/v1/decisions/jwks.json", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .expect("the decision's key is published");
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[audience]);
        v.set_issuer(&["urn:hush:decisions"]);
        jsonwebtoken::decode::<DecisionClaims>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn a_member_presenting_their_token_gets_a_signed_decision_for_that_app_only() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    let rp = register(&app, g, AUD);
    app.directory.put(g, "alice");
    let res = app
        .exchange(Some(&basic(rp.id, SECRET)), form(&app.token(ALICE)))
        .await;
    let (status, _, body) = res.answer();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(body["resources"], json!(["report"]));
    let claims = app
        .verify(body["access_token"].as_str().unwrap(), AUD)
        .await
        .unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.aud.as_str(), claims.resources),
        ("alice", AUD, vec!["report".to_string()])
    );
    assert_eq!(claims.azp, rp.id.to_string());
    assert!(claims.exp - claims.iat <= 300);
    // Another app does not accept it: the audience is the first app's.
    let err = app
        .verify(
            body["access_token"].as_str().unwrap(),
            "https://wiki.corp.example",
        )
        .await
        .unwrap_err();
    assert!(err.contains("Audience"), "{err}");
}

#[tokio::test]
async fn a_non_member_an_agent_and_a_guest_get_no_resource_even_when_in_the_group() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    let rp = register(&app, g, AUD);
    // The agent and the guest are in the group (put there behind the label's back): the
    // label bars them, whatever the binding.
    app.directory.put(g, "aida");
    app.directory.put(g, "gina");
    for who in [BOB, AIDA_AGENT, GINA_GUEST] {
        let (status, _, body) = app
            .exchange(Some(&basic(rp.id, SECRET)), form(&app.token(who)))
            .await
            .answer();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["resources"], json!([]), "{}", who.sub);
        let claims = app
            .verify(body["access_token"].as_str().unwrap(), AUD)
            .await
            .unwrap();
        assert_eq!(claims.sub, who.sub);
        assert!(claims.resources.is_empty());
    }
}

#[tokio::test]
async fn an_app_credential_alone_gets_nothing_and_every_bad_credential_answers_the_same() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    let rp = register(&app, g, AUD);
    app.directory.put(g, "alice");
    // No person's token: no decision, whatever else the app sends.
    let no_subject = format!(
        "grant_type={}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&subject=alice",
        urlencode(TOKEN_EXCHANGE_GRANT)
    );
    let got = app
        .exchange(Some(&basic(rp.id, SECRET)), no_subject)
        .await
        .answer();
    assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    // A token that is not a valid token of a person.
    let got = app
        .exchange(Some(&basic(rp.id, SECRET)), form("not-a-token"))
        .await
        .answer();
    assert_problem(&got, StatusCode::BAD_REQUEST, "invalid-grant");
    // Unknown app, wrong secret, disabled app, no credential: one answer.
    let token = app.token(ALICE);
    let unknown = app
        .exchange(Some(&basic(Uuid::new_v4(), SECRET)), form(&token))
        .await;
    let wrong = app
        .exchange(Some(&basic(rp.id, "guess")), form(&token))
        .await;
    let none = app.exchange(None, form(&token)).await;
    let mut disabled = rp.clone();
    disabled.enabled = false;
    app.catalog.insert_app(disabled);
    let off = app
        .exchange(Some(&basic(rp.id, SECRET)), form(&token))
        .await;
    for res in [&unknown, &wrong, &none, &off] {
        assert_problem(&res.answer(), StatusCode::UNAUTHORIZED, "invalid-client");
        assert!(res.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic"));
        assert_eq!(res.visible(), unknown.visible());
    }
    // A grant that is not a token exchange.
    let got = app
        .exchange(
            Some(&basic(rp.id, SECRET)),
            "grant_type=client_credentials".into(),
        )
        .await
        .answer();
    assert_problem(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
}

#[tokio::test]
async fn a_persons_token_issued_for_another_app_is_refused_and_one_for_this_app_accepted() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    let rp = register(&app, g, AUD);
    app.directory.put(g, "alice");
    let for_wiki = app.token_with(ALICE, &json!({"aud": "https://wiki.corp.example"}));
    let got = app
        .exchange(Some(&basic(rp.id, SECRET)), form(&for_wiki))
        .await
        .answer();
    assert_problem(&got, StatusCode::BAD_REQUEST, "invalid-grant");
    let for_reports = app.token_with(ALICE, &json!({"aud": AUD}));
    let (status, _, body) = app
        .exchange(Some(&basic(rp.id, SECRET)), form(&for_reports))
        .await
        .answer();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["resources"], json!(["report"]));
}

#[tokio::test]
async fn a_person_fetches_an_assertion_for_an_app_and_only_that_app_accepts_it() {
    let app = spawn_app().await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    register(&app, g, AUD);
    app.directory.put(g, "alice");
    let (status, _, body) = app
        .call(
            ALICE,
            Method::POST,
            "/membership/v1/me/assertions",
            Some(json!({"audience": AUD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = app
        .verify(body["assertion"].as_str().unwrap(), AUD)
        .await
        .unwrap();
    assert_eq!(claims.resources, ["report"]);
    assert_eq!(claims.hush_via, "assertion");
    assert!(app
        .verify(
            body["assertion"].as_str().unwrap(),
            "https://wiki.corp.example"
        )
        .await
        .is_err());
    let got = app
        .call(
            ALICE,
            Method::POST,
            "/membership/v1/me/assertions",
            Some(json!({"audience": "https://nobody.example"})),
        )
        .await;
    assert_problem(&got, StatusCode::NOT_FOUND, "unknown-app");
    let got = app
        .call(
            ALICE,
            Method::POST,
            "/membership/v1/me/assertions",
            Some(json!({"audience": AUD, "subject": "bob"})),
        )
        .await;
    assert_eq!(got.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", got.2);
    let anonymous = app
        .raw(
            Method::POST,
            "/membership/v1/me/assertions",
            None,
            Some(&json!({"audience": AUD})),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn decisions_are_rate_limited_per_app() {
    let app = spawn_app_with(AbuseLimits {
        decisions_per_second_per_app: 2,
        ..AbuseLimits::default()
    })
    .await;
    let g = app.group("Confidential", JoinPolicy::Approval, GroupState::Active);
    let rp = register(&app, g, AUD);
    let other = register(&app, g, "https://other.corp.example");
    let token = app.token(ALICE);
    for _ in 0..2 {
        let res = app
            .exchange(Some(&basic(rp.id, SECRET)), form(&token))
            .await;
        assert_eq!(res.status, StatusCode::OK);
    }
    let limited = app
        .exchange(Some(&basic(rp.id, SECRET)), form(&token))
        .await;
    assert_problem(
        &limited.answer(),
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
    );
    assert_eq!(limited.headers[header::RETRY_AFTER], "1");
    let res = app
        .exchange(Some(&basic(other.id, SECRET)), form(&token))
        .await;
    assert_eq!(res.status, StatusCode::OK, "another app has its own budget");
}

#[tokio::test]
async fn the_jwks_publishes_public_keys_only() {
    let app = spawn_app().await;
    let (status, _, jwks) = app
        .send(Method::GET, "/membership/v1/decisions/jwks.json", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert!(key.get("d").is_none(), "no private part: {key}");
    let _: Value = jwks;
}
