//! Users' tokens against a real JWKS over HTTP: what passes, and everything that must not.

use crate::helpers::*;
use auth::{AuthError, JwtArgs, Verifier, DEV_ISSUER};
use domain::IdentityKind;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::future::{poll_fn, Future as _};
use std::task::Poll;
use std::time::Duration;

#[tokio::test]
async fn an_es256_token_becomes_a_caller() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;

    let caller = server
        .verifier()
        .verify(&key.sign(&claims()))
        .await
        .unwrap();

    assert_eq!(caller.subject.as_str(), "alice");
    assert_eq!(caller.email.unwrap().as_str(), "alice@corp.example");
    assert_eq!(caller.kind, IdentityKind::Guest);
    assert_eq!(caller.roles, ["operator", "auditor"]);
    server.stop().await;
}

#[tokio::test]
async fn the_caller_carries_every_claim_for_rules_over_claims() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let mut body = claims();
    body["department"] = json!("Legal");
    body["org"] = json!({ "country": "DE" });

    let caller = server.verifier().verify(&key.sign(&body)).await.unwrap();

    assert_eq!(caller.claims["department"], "Legal");
    assert_eq!(caller.claims["org"]["country"], "DE");
    assert_eq!(caller.claims["sub"], "alice");
    server.stop().await;
}

#[tokio::test]
async fn an_rs256_token_becomes_a_caller() {
    let rsa = rsa_key();
    let server = JwksServer::start(jwks(&[rsa.jwk("rsa-1")])).await;

    let caller = server
        .verifier()
        .verify(&rsa.sign(&claims(), "rsa-1"))
        .await
        .unwrap();

    assert_eq!(caller.subject.as_str(), "alice");
    assert!(caller.has_role("operator"));
    server.stop().await;
}

#[tokio::test]
async fn keys_are_cached_between_tokens() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let verifier = server.verifier();

    for _ in 0..5 {
        verifier.verify(&key.sign(&claims())).await.unwrap();
    }

    assert_eq!(server.hits(), 1);
    server.stop().await;
}

#[tokio::test]
async fn absent_kind_means_member_and_absent_roles_mean_none() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let token = key.sign(&claims_with(
        &json!({"hush_kind": null, "roles": null, "email": null}),
    ));

    let caller = server.verifier().verify(&token).await.unwrap();

    assert_eq!(caller.kind, IdentityKind::Member);
    assert!(caller.roles.is_empty());
    assert!(caller.email.is_none());
    server.stop().await;
}

#[tokio::test]
async fn a_token_without_a_kind_may_be_read_as_a_guest_or_refused() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let without = key.sign(&claims_with(&json!({"hush_kind": null})));
    let with_agent = key.sign(&claims_with(&json!({"hush_kind": "agent"})));
    let unknown = key.sign(&claims_with(&json!({"hush_kind": "admin"})));
    for (absent, expected) in [("guest", Some(IdentityKind::Guest)), ("refuse", None)] {
        let mut args = JwtArgs::new(ISSUER, AUDIENCE, &server.url);
        args.claim_kind_absent = absent.into();
        let verifier = Verifier::new(&args).unwrap();
        match expected {
            Some(kind) => assert_eq!(verifier.verify(&without).await.unwrap().kind, kind),
            None => {
                let msg = refusal(&verifier, &without).await;
                assert!(msg.contains("identity kind"), "{msg}");
            }
        }
        // A kind the token states is taken as it is; one Hush does not know is refused.
        assert_eq!(
            verifier.verify(&with_agent).await.unwrap().kind,
            IdentityKind::Agent
        );
        refusal(&verifier, &unknown).await;
    }
    let mut bad = JwtArgs::new(ISSUER, AUDIENCE, &server.url);
    bad.claim_kind_absent = "agent".into();
    assert!(Verifier::new(&bad).is_err(), "absent never means agent");
    server.stop().await;
}

#[tokio::test]
async fn claim_names_are_configurable_and_may_be_dotted_paths() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let mut args = JwtArgs::new(ISSUER, AUDIENCE, &server.url);
    args.claim_email = "upn".into();
    args.claim_kind = "ext.kind".into();
    args.claim_roles = "realm_access.roles".into();
    let verifier = Verifier::new(&args).unwrap();
    let token = key.sign(&claims_with(&json!({
        "upn": "bob@corp.example", "ext": {"kind": "agent"},
        "realm_access": {"roles": ["label-admin"]}, "email": null, "roles": null, "hush_kind": null,
    })));

    let caller = verifier.verify(&token).await.unwrap();

    assert_eq!(caller.email.unwrap().as_str(), "bob@corp.example");
    assert_eq!(caller.kind, IdentityKind::Agent);
    assert_eq!(caller.roles, ["label-admin"]);
    server.stop().await;
}

#[tokio::test]
async fn roles_may_be_one_space_separated_string() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;

    let caller = server
        .verifier()
        .verify(&key.sign(&claims_with(&json!({"roles": "a b"}))))
        .await
        .unwrap();

    assert_eq!(caller.roles, ["a", "b"]);
    server.stop().await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let verifier = server.verifier();

    for alg in ["none", "None", "NONE"] {
        let token = raw_token(
            &json!({"alg": alg, "typ": "JWT", "kid": "ec-1"}),
            &claims(),
            b"",
        );
        refusal(&verifier, &token).await;
        let unsigned = token.trim_end_matches('.').to_string() + ".";
        refusal(&verifier, &unsigned).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let key = EcKey::new("ec-1");
    let rsa = rsa_key();
    let server = JwksServer::start(jwks(&[key.jwk(), rsa.jwk("rsa-1")])).await;
    let verifier = server.verifier();

    for (kid, public) in [
        ("ec-1", key.public_pem()),
        ("rsa-1", rsa.public_pem.clone()),
    ] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.into());
        let token =
            jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(public.as_bytes()))
                .unwrap();
        let reason = refusal(&verifier, &token).await;
        assert!(reason.contains("algorithm"), "{kid}: {reason}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_key_verifies_only_with_its_own_algorithm() {
    // An RSA key's kid on an ES256 token, an EC key's kid on an RS256 token.
    let key = EcKey::new("ec-1");
    let rsa = rsa_key();
    let server = JwksServer::start(jwks(&[key.jwk(), rsa.jwk("rsa-1")])).await;
    let verifier = server.verifier();

    refusal(&verifier, &key.sign_with_kid(&claims(), "rsa-1")).await;
    refusal(&verifier, &rsa.sign(&claims(), "ec-1")).await;
    server.stop().await;
}

#[tokio::test]
async fn a_jwk_whose_alg_disagrees_with_its_type_is_not_used() {
    let key = EcKey::new("ec-1");
    let mut jwk = key.jwk();
    jwk["alg"] = json!("RS256");
    let server = JwksServer::start(jwks(&[jwk])).await;

    let reason = refusal(&server.verifier(), &key.sign(&claims())).await;

    assert!(reason.contains("does not know"), "{reason}");
    server.stop().await;
}

#[tokio::test]
async fn an_encryption_key_is_not_used_for_signatures() {
    let key = EcKey::new("ec-1");
    let mut jwk = key.jwk();
    jwk["use"] = json!("enc");
    let server = JwksServer::start(jwks(&[jwk])).await;

    refusal(&server.verifier(), &key.sign(&claims())).await;
    server.stop().await;
}

#[tokio::test]
async fn expired_tokens_are_refused_beyond_the_leeway() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let verifier = server.verifier();

    let expired = key.sign(&claims_with(
        &json!({"iat": now() - 600, "nbf": now() - 600, "exp": now() - 120}),
    ));
    let reason = refusal(&verifier, &expired).await;
    assert!(reason.contains("expired"), "{reason}");

    let within_leeway = key.sign(&claims_with(&json!({"exp": now() - 10})));
    verifier
        .verify(&within_leeway)
        .await
        .expect("10 s of skew is tolerated");
    server.stop().await;
}

#[tokio::test]
async fn tokens_not_yet_valid_are_refused() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;

    let early = key.sign(&claims_with(
        &json!({"nbf": now() + 120, "exp": now() + 600}),
    ));
    let reason = refusal(&server.verifier(), &early).await;

    assert!(reason.contains("not valid yet"), "{reason}");
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_issuer_is_refused() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;

    let token = key.sign(&claims_with(&json!({"iss": "https://evil.example"})));
    let reason = refusal(&server.verifier(), &token).await;

    assert!(reason.contains("issuer"), "{reason}");
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let verifier = server.verifier();

    for aud in [json!("other-app"), json!(["other-app", "another"])] {
        let reason = refusal(&verifier, &key.sign(&claims_with(&json!({"aud": aud})))).await;
        assert!(reason.contains("not meant for this service"), "{reason}");
    }
    // Listing us among several audiences is fine.
    verifier
        .verify(&key.sign(&claims_with(&json!({"aud": ["other-app", AUDIENCE]}))))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn tokens_missing_exp_iss_or_aud_are_refused() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let verifier = server.verifier();

    for claim in ["exp", "iss", "aud"] {
        let token = key.sign(&claims_with(&json!({ claim: null })));
        let reason = refusal(&verifier, &token).await;
        assert!(reason.contains(&format!("'{claim}'")), "{claim}: {reason}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_bad_subject_kind_email_or_roles_is_refused() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let verifier = server.verifier();

    let cases = [
        json!({"sub": null}),
        json!({"sub": ""}),
        json!({"sub": "a\nb"}),
        json!({"sub": 42}),
        json!({"hush_kind": "admin"}),
        json!({"hush_kind": "Member"}),
        json!({"hush_kind": 1}),
        json!({"email": "not-an-address"}),
        json!({"roles": [1, 2]}),
        json!({"roles": {"a": 1}}),
    ];
    for change in cases {
        refusal(&verifier, &key.sign(&claims_with(&change))).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_kid_is_refused_after_one_refetch() {
    let key = EcKey::new("ec-1");
    let stranger = EcKey::new("ec-unknown");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let verifier = Verifier::with_refetch_interval(
        JwtArgs::new(ISSUER, AUDIENCE, &server.url),
        Duration::ZERO,
    )
    .unwrap();
    verifier.verify(&key.sign(&claims())).await.unwrap();
    assert_eq!(server.hits(), 1);

    let reason = refusal(&verifier, &stranger.sign(&claims())).await;

    assert!(reason.contains("does not know"), "{reason}");
    assert_eq!(
        server.hits(),
        2,
        "the unknown kid made the verifier look again"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_flood_of_unknown_kids_does_not_hammer_the_idp() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let verifier = server.verifier();
    verifier.verify(&key.sign(&claims())).await.unwrap();

    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (v, token) = (
            verifier.clone(),
            key.sign_with_kid(&claims(), &format!("random-{i}")),
        );
        set.spawn(async move { v.verify(&token).await });
    }
    let results = set.join_all().await;

    assert!(results
        .iter()
        .all(|r| matches!(r, Err(AuthError::InvalidToken(_)))));
    assert!(
        server.hits() <= 2,
        "at most one refetch, not one per token: {}",
        server.hits()
    );
    // The known key still works meanwhile.
    verifier.verify(&key.sign(&claims())).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_fetch_whose_caller_went_away_still_caches_the_keys() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let verifier = server.verifier();
    let token = key.sign(&claims());

    // The first request's client goes away while the keys are being fetched: polled once,
    // then dropped.
    let mut first = Box::pin(verifier.verify(&token));
    let fetching = poll_fn(|cx| Poll::Ready(first.as_mut().poll(cx).is_pending())).await;
    assert!(fetching, "the first request was still fetching");
    drop(first);

    verifier
        .verify(&token)
        .await
        .expect("the next request finds the keys, not a rate-limited empty set");
    assert_eq!(server.hits(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_demand() {
    let old = EcKey::new("2024-key");
    let new = EcKey::new("2025-key");
    let server = JwksServer::start(jwks(&[old.jwk()])).await;
    let verifier = Verifier::with_refetch_interval(
        JwtArgs::new(ISSUER, AUDIENCE, &server.url),
        Duration::ZERO,
    )
    .unwrap();
    verifier.verify(&old.sign(&claims())).await.unwrap();

    server.set(jwks(&[new.jwk()]));

    verifier
        .verify(&new.sign(&claims()))
        .await
        .expect("the new kid is fetched");
    assert_eq!(server.hits(), 2);
    refusal(&verifier, &old.sign(&claims())).await;
    server.stop().await;
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let token = key.sign(&claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = raw_token(
        &json!({}),
        &claims_with(&json!({"sub": "mallory", "roles": ["operator"]})),
        b"",
    );
    let forged_payload = forged.split('.').nth(1).unwrap().to_string();
    parts[1] = &forged_payload;

    let reason = refusal(&server.verifier(), &parts.join(".")).await;

    assert!(reason.contains("signature"), "{reason}");
    server.stop().await;
}

#[tokio::test]
async fn garbage_is_refused() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let verifier = server.verifier();
    let valid = key.sign(&claims());
    let truncated = valid[..valid.len() - 10].to_string();
    let extra_segment = format!("{valid}.abc");

    for token in [
        "",
        "abc",
        "a.b",
        "abc.def.ghi",
        "....",
        "eyJhbGciOiJFUzI1NiJ9.e30.",
        &truncated,
        &extra_segment,
    ] {
        refusal(&verifier, token).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_token_without_kid_is_refused() {
    let key = EcKey::new("ec-1");
    let server = JwksServer::start(jwks(&[key.jwk()])).await;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims(),
        &EncodingKey::from_ec_pem(key.private_pem().as_bytes()).unwrap(),
    )
    .unwrap();

    let reason = refusal(&server.verifier(), &token).await;

    assert!(reason.contains("kid"), "{reason}");
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_idp_is_a_503_not_a_401() {
    // Bind and drop: the port is (almost certainly) closed now.
    let url = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}/jwks.json", l.local_addr().unwrap())
    };
    let verifier = Verifier::new(JwtArgs::new(ISSUER, AUDIENCE, url)).unwrap();
    let key = EcKey::new("ec-1");

    let err = verifier.verify(&key.sign(&claims())).await.unwrap_err();

    assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
    assert_eq!(err.to_problem().status, 503);
}

#[tokio::test]
async fn the_dev_issuer_is_refused_outside_dev_mode() {
    let args = JwtArgs::new(DEV_ISSUER, AUDIENCE, "http://127.0.0.1:1/jwks.json");

    let err = Verifier::new(&args).unwrap_err();

    assert!(matches!(err, AuthError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("dev mode"), "{err}");
    let mut dev = args.clone();
    dev.dev_mode = true;
    Verifier::new(dev).expect("accepted in dev mode");
}

#[tokio::test]
async fn a_jwks_url_that_is_not_http_is_refused() {
    for url in ["file:///etc/passwd", "ftp://idp.example/jwks", "not a url"] {
        // (An empty one is no URL at all: the key set is then found by discovery.)
        let err = Verifier::new(JwtArgs::new(ISSUER, AUDIENCE, url)).unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{url}: {err:?}");
    }
    Verifier::new(JwtArgs::new(ISSUER, AUDIENCE, "https://idp.example/jwks")).unwrap();
}
