//! Service tokens: minted by one service for another, trusted per service, short-lived.

use crate::helpers::{claims, now, EcKey};
use auth::{
    generate_service_key, parse_trusted_keys, service_key_path, AuthError, ServiceKeyArgs,
    ServiceSigner, ServiceVerifier, MAX_SERVICE_TOKEN_LIFETIME_SECS,
};
use domain::ServiceName::{self, BulkApi, ControlApi, IsolatedTenant, MembershipApi};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::Path;

fn tenant_trusting(dir: &Path, services: &[ServiceName]) -> ServiceVerifier {
    ServiceVerifier::load(dir, IsolatedTenant, services).unwrap()
}

/// Signs arbitrary claims with a service's key file, as an attacker holding it (or a buggy
/// minter) could.
fn sign_raw(dir: &Path, service: ServiceName, claims: &Value) -> String {
    let pem = std::fs::read(service_key_path(dir, service)).unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(service.to_string());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_pem(&pem).unwrap()).unwrap()
}

fn refused(v: &ServiceVerifier, token: &str) -> String {
    let err = v.verify(token).expect_err("the token must be refused");
    assert!(err.is_unauthorized(), "{err:?}");
    err.to_string()
}

#[test]
fn a_service_token_names_the_calling_service() {
    let dir = tempfile::tempdir().unwrap();
    generate_service_key(dir.path(), MembershipApi).unwrap();
    let signer = ServiceSigner::load(dir.path(), MembershipApi).unwrap();
    let tenant = tenant_trusting(dir.path(), &[MembershipApi]);

    let a = tenant.verify(&signer.mint(IsolatedTenant)).unwrap();
    let b = tenant.verify(&signer.mint(IsolatedTenant)).unwrap();

    assert_eq!(a.service, MembershipApi);
    assert_ne!(a.token_id, b.token_id, "every token has its own jti");
}

#[test]
fn a_token_is_reused_per_audience_and_verified_once_yet_a_forgery_of_it_is_still_refused() {
    let signer = ServiceSigner::generate(MembershipApi).unwrap();
    let tenant = ServiceVerifier::new(IsolatedTenant)
        .trust(MembershipApi, signer.public_key_pem())
        .unwrap();
    let control = ServiceVerifier::new(ControlApi)
        .trust(MembershipApi, signer.public_key_pem())
        .unwrap();
    // Within auth::SERVICE_TOKEN_REUSE_SECS one token per audience, shared by clones.
    let t = signer.token(IsolatedTenant);
    assert_eq!(signer.clone().token(IsolatedTenant), t);
    const { assert!(auth::SERVICE_TOKEN_REUSE_SECS * 2 <= auth::SERVICE_TOKEN_TTL_SECS) };
    let c = signer.token(ControlApi);
    assert_ne!(c, t, "a token per audience");
    // Verified, then remembered: the same answer.
    let first = tenant.verify(&t).unwrap();
    assert_eq!(tenant.clone().verify(&t).unwrap(), first);
    // Remembering a token does not let another audience's or an altered one through.
    refused(&tenant, &c);
    assert!(control.verify(&c).is_ok());
    let mut forged = t.clone();
    forged.push('A');
    refused(&tenant, &forged);
    let (head, _) = t.rsplit_once('.').unwrap();
    refused(&tenant, &format!("{head}.AAAA"));
}

#[test]
fn minted_tokens_live_sixty_seconds() {
    let signer = ServiceSigner::generate(BulkApi).unwrap();
    let token = signer.mint(IsolatedTenant);
    let c: Value = {
        use base64::Engine as _;
        let p = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        (c["iss"].as_str(), c["sub"].as_str(), c["aud"].as_str()),
        (Some("bulk-api"), Some("bulk-api"), Some("isolated-tenant"))
    );
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 60);
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
}

#[test]
fn a_token_for_another_audience_is_refused() {
    let signer = ServiceSigner::generate(MembershipApi).unwrap();
    let tenant = ServiceVerifier::new(IsolatedTenant)
        .trust(MembershipApi, signer.public_key_pem())
        .unwrap();

    let reason = refused(&tenant, &signer.mint(ControlApi));

    assert!(reason.contains("not meant for this service"), "{reason}");
}

#[test]
fn an_untrusted_service_is_refused() {
    let trusted = ServiceSigner::generate(MembershipApi).unwrap();
    let other = ServiceSigner::generate(BulkApi).unwrap();
    let control = ServiceVerifier::new(ControlApi)
        .trust(MembershipApi, trusted.public_key_pem())
        .unwrap();

    let reason = refused(&control, &other.mint(ControlApi));

    assert!(reason.contains("trusts"), "{reason}");
}

#[test]
fn a_token_signed_with_another_key_is_refused() {
    let real = ServiceSigner::generate(MembershipApi).unwrap();
    let impostor = ServiceSigner::generate(MembershipApi).unwrap();
    let tenant = ServiceVerifier::new(IsolatedTenant)
        .trust(MembershipApi, real.public_key_pem())
        .unwrap();

    let reason = refused(&tenant, &impostor.mint(IsolatedTenant));

    assert!(reason.contains("signature"), "{reason}");
}

#[test]
fn expired_overlong_and_incomplete_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    generate_service_key(dir.path(), BulkApi).unwrap();
    let tenant = tenant_trusting(dir.path(), &[BulkApi]);
    let t = now();
    let base = |iat: i64, exp: Option<i64>| {
        let mut c = json!({"iss": "bulk-api", "sub": "bulk-api", "aud": "isolated-tenant", "iat": iat, "jti": "x"});
        if let Some(e) = exp {
            c["exp"] = json!(e);
        }
        c
    };

    let ok = sign_raw(dir.path(), BulkApi, &base(t, Some(t + 60)));
    assert!(tenant.verify(&ok).is_ok());

    let expired = refused(
        &tenant,
        &sign_raw(dir.path(), BulkApi, &base(t - 600, Some(t - 300))),
    );
    assert!(expired.contains("expired"), "{expired}");

    let max = MAX_SERVICE_TOKEN_LIFETIME_SECS as i64;
    let long = refused(
        &tenant,
        &sign_raw(dir.path(), BulkApi, &base(t, Some(t + max + 1))),
    );
    assert!(long.contains("lifetime"), "{long}");
    // A far-future iat cannot stretch the lifetime either.
    let shifted = refused(
        &tenant,
        &sign_raw(dir.path(), BulkApi, &base(t + 3600, Some(t + 3660))),
    );
    assert!(shifted.contains("lifetime"), "{shifted}");

    let no_exp = refused(&tenant, &sign_raw(dir.path(), BulkApi, &base(t, None)));
    assert!(no_exp.contains("'exp'"), "{no_exp}");

    let mut sub_differs = base(t, Some(t + 60));
    sub_differs["sub"] = json!("control-api");
    refused(&tenant, &sign_raw(dir.path(), BulkApi, &sub_differs));
}

#[test]
fn a_users_token_is_not_a_service_token() {
    let signer = ServiceSigner::generate(MembershipApi).unwrap();
    let tenant = ServiceVerifier::new(IsolatedTenant)
        .trust(MembershipApi, signer.public_key_pem())
        .unwrap();
    let idp = EcKey::new("ec-1");
    let mut user = claims();
    user["aud"] = json!("isolated-tenant");

    let reason = refused(&tenant, &idp.sign(&user));
    assert!(reason.contains("trusts"), "{reason}");
    // Even claiming to be a service, a token not signed with that service's key fails.
    user["iss"] = json!("membership-api");
    user["sub"] = json!("membership-api");
    refused(&tenant, &idp.sign(&user));
    for garbage in ["", "a.b.c", "not-a-jwt"] {
        refused(&tenant, garbage);
    }
}

#[test]
fn generating_keys_writes_a_private_pem_0600_and_keeps_existing_files() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");

    let first = generate_service_key(&keys, ControlApi).unwrap();
    let private = std::fs::read_to_string(&first.private_key).unwrap();
    let public = std::fs::read_to_string(&first.public_key).unwrap();
    let again = generate_service_key(&keys, ControlApi).unwrap();

    assert!(first.created && !again.created);
    assert!(first.private_key.ends_with("control-api.key.pem"));
    assert!(first.public_key.ends_with("control-api.pub.pem"));
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(
        std::fs::read_to_string(&first.private_key).unwrap(),
        private
    );
    assert_eq!(std::fs::read_to_string(&first.public_key).unwrap(), public);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&first.private_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The pair matches: a token signed with the private key verifies with the public one.
    let signer = ServiceKeyArgs {
        service_key_file: first.private_key.clone(),
    }
    .signer(ControlApi)
    .unwrap();
    let v = ServiceVerifier::new(IsolatedTenant)
        .trust(ControlApi, &public)
        .unwrap();
    assert!(v.verify(&signer.mint(IsolatedTenant)).is_ok());
}

#[test]
fn a_lost_public_key_is_derived_again_but_a_lone_public_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = generate_service_key(dir.path(), BulkApi).unwrap();
    let public = std::fs::read_to_string(&files.public_key).unwrap();
    std::fs::remove_file(&files.public_key).unwrap();

    generate_service_key(dir.path(), BulkApi).unwrap();
    assert_eq!(std::fs::read_to_string(&files.public_key).unwrap(), public);

    std::fs::remove_file(&files.private_key).unwrap();
    let err = generate_service_key(dir.path(), BulkApi).unwrap_err();
    assert!(matches!(err, AuthError::KeyFile { .. }), "{err:?}");
}

#[test]
fn trusted_keys_are_read_from_the_configured_list() {
    let dir = tempfile::tempdir().unwrap();
    let m = generate_service_key(dir.path(), MembershipApi).unwrap();
    let b = generate_service_key(dir.path(), BulkApi).unwrap();
    let spec = format!(
        "membership-api={}, bulk-api={}",
        m.public_key.display(),
        b.public_key.display()
    );

    let v = ServiceVerifier::from_trusted_keys(IsolatedTenant, &spec).unwrap();

    assert_eq!(v.trusted(), [BulkApi, MembershipApi]);
    let signer = ServiceSigner::load(dir.path(), BulkApi).unwrap();
    assert!(v.verify(&signer.mint(IsolatedTenant)).is_ok());
    assert!(ServiceVerifier::from_trusted_keys(IsolatedTenant, "")
        .unwrap()
        .trusted()
        .is_empty());
    for bad in [
        "nobody=/x.pem",
        "bulk-api",
        "bulk-api=",
        "bulk-api=/a,bulk-api=/b",
    ] {
        assert!(
            matches!(parse_trusted_keys(bad), Err(AuthError::Config(_))),
            "{bad}"
        );
    }
    assert!(
        ServiceVerifier::from_trusted_keys(IsolatedTenant, "bulk-api=/does/not/exist.pem").is_err()
    );
    assert!(ServiceVerifier::new(IsolatedTenant)
        .trust(BulkApi, "not a pem")
        .is_err());
}
