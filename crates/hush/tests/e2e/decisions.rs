//! Apps that check access without ever seeing a member list (issue 18), through the real
//! services: an operator registers an app and its resources, an owner binds a group (refused
//! when the group's label ranks below the resource's), and the app gets signed decisions about
//! the person presenting their own token only.

use crate::helpers::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub const AUDIENCE: &str = "https://reports.corp.example";

/// A registered app: its id and its credential.
pub struct RegisteredApp {
    pub id: String,
    pub secret: String,
    /// Resource name → id.
    pub resources: Vec<(String, String)>,
}

impl App {
    /// Registers an app with `resources` (name, label) as the operator.
    pub async fn register_app(&self, audience: &str, resources: &[(&str, &str)]) -> RegisteredApp {
        let operator = self.operator();
        let res = self
            .post(
                &self.control("/relying-parties"),
                &operator,
                json!({"name": "Reports", "audience": audience}),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
        let id = res.body["id"].as_str().unwrap().to_string();
        let secret = res.body["credential"].as_str().unwrap().to_string();
        let mut made = Vec::new();
        for (name, label) in resources {
            let r = self
                .post(
                    &self.control(&format!("/relying-parties/{id}/resources")),
                    &operator,
                    json!({"name": name, "label": label}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            made.push((name.to_string(), r.body["id"].as_str().unwrap().to_string()));
        }
        RegisteredApp {
            id,
            secret,
            resources: made,
        }
    }

    /// The owner binds `group` to the resource `rid`.
    pub async fn bind(&self, owner: &str, group: &str, rid: &str) -> Res {
        self.call(
            reqwest::Method::PUT,
            &self.control(&format!("/groups/{group}/bindings/{rid}")),
            Some(owner),
            None,
        )
        .await
    }

    /// The app exchanges `person_token` for a decision (RFC 8693).
    pub async fn exchange(
        &self,
        app: &RegisteredApp,
        secret: &str,
        person_token: Option<&str>,
    ) -> Res {
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ];
        if let Some(t) = person_token {
            form.push(("subject_token", t));
        }
        let res = self
            .http
            .post(self.membership("/decisions/token"))
            .basic_auth(&app.id, Some(secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        Res {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    /// A decision's claims, checked as an app would: the JWKS over HTTP, EdDSA, the issuer,
    /// `audience`, the expiry.
    pub async fn verify_decision(&self, signed: &str, audience: &str) -> Result<Value, String> {
        let jwks: jsonwebtoken::jwk::JwkSet = self
            .http
            .get(self.membership("/decisions/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kid = jsonwebtoken::decode_header(signed).unwrap().kid.unwrap();
        let jwk = jwks.find(&kid).expect("the signing key is published");
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[audience]);
        v.set_issuer(&["urn:hush:decisions"]);
        jsonwebtoken::decode::<Value>(signed, &DecodingKey::from_jwk(jwk).unwrap(), &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }
}

async fn an_app_learns_only_about_the_person_presenting_their_token(kind: Backend) {
    let app = App::spawn_on(kind).await;
    let alice = app.member("alice");
    let team = app
        .active_group(&alice, "Payroll team", "Confidential", "approval")
        .await;
    let club = app
        .active_group(&alice, "Book club", "General", "open")
        .await;
    let rp = app
        .register_app(
            AUDIENCE,
            &[
                ("team-site", "Confidential"),
                ("payroll", "Highly Confidential"),
            ],
        )
        .await;
    let (site, payroll) = (&rp.resources[0].1, &rp.resources[1].1);

    // A Highly Confidential resource is never given to a General group (nor to a Confidential
    // one): refused, with the reason, and nothing bound.
    let refused = app.bind(&alice, &club, payroll).await;
    refused.assert_problem(409);
    assert_eq!(refused.body["type"], "urn:hush:problem:binding-refused");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("ranks below"),
        "{}",
        refused.text
    );
    app.bind(&alice, &team, payroll).await.assert_problem(409);
    let bound = app.bind(&alice, &team, site).await;
    assert_eq!(bound.status, StatusCode::CREATED, "{}", bound.text);
    let bindings = app
        .get(&app.control(&format!("/groups/{club}/bindings")), &alice)
        .await;
    assert_eq!(bindings.status, StatusCode::OK, "{}", bindings.text);
    assert_eq!(bindings.body, json!([]), "the refusal bound nothing");

    // Bob is added by his owner; Carol is in no group; Robot is an AI agent.
    let added = app
        .post(
            &app.membership(&format!("/groups/{team}/members")),
            &alice,
            json!({"email": "bob@corp.example"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::ACCEPTED, "{}", added.text);
    let bob = app.member("bob");
    let carol = app.member("carol");
    let robot = app.token("robot", IdentityKind::Agent, &[]);

    let decided = app.exchange(&rp, &rp.secret, Some(&bob)).await;
    assert_eq!(decided.status, StatusCode::OK, "{}", decided.text);
    assert_eq!(decided.body["resources"], json!(["team-site"]));
    let claims = app
        .verify_decision(decided.body["access_token"].as_str().unwrap(), AUDIENCE)
        .await
        .unwrap();
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["resources"], json!(["team-site"]));
    // A decision for this app is not accepted by another (its audience).
    assert!(app
        .verify_decision(
            decided.body["access_token"].as_str().unwrap(),
            "https://wiki.corp.example"
        )
        .await
        .is_err());

    for (who, token) in [("carol", &carol), ("robot", &robot)] {
        let d = app.exchange(&rp, &rp.secret, Some(token)).await;
        assert_eq!(d.status, StatusCode::OK, "{}", d.text);
        assert_eq!(d.body["resources"], json!([]), "{who}");
    }

    // The app's credential alone gets nothing; a wrong credential gets the same 401 as an
    // unknown app.
    app.exchange(&rp, &rp.secret, None)
        .await
        .assert_problem(422);
    let wrong = app.exchange(&rp, "guess", Some(&bob)).await;
    wrong.assert_problem(401);
    assert_eq!(wrong.body["type"], "urn:hush:problem:invalid-client");

    // The person can fetch an assertion of their own for the app.
    let asserted = app
        .post(
            &app.membership("/me/assertions"),
            &bob,
            json!({"audience": AUDIENCE}),
        )
        .await;
    assert_eq!(asserted.status, StatusCode::OK, "{}", asserted.text);
    let claims = app
        .verify_decision(asserted.body["assertion"].as_str().unwrap(), AUDIENCE)
        .await
        .unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["resources"].clone()),
        (Some("bob"), json!(["team-site"]))
    );

    // Unbinding takes the resource away (within the catalog poll interval).
    let unbound = app
        .call(
            reqwest::Method::DELETE,
            &app.control(&format!("/groups/{team}/bindings/{site}")),
            Some(&alice),
            None,
        )
        .await;
    assert!(unbound.status.is_success(), "{}", unbound.text);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let d = app.exchange(&rp, &rp.secret, Some(&bob)).await;
        if d.body["resources"] == json!([]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still granted: {}",
            d.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.stop().await;
}

service_kit::backend_tests!(an_app_learns_only_about_the_person_presenting_their_token,);
