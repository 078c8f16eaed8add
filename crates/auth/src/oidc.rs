//! The way to the company IdP: an HTTP client that trusts the system's CA roots plus an
//! optional extra CA file (an IdP on a private CA), and OIDC discovery
//! (`<issuer>/.well-known/openid-configuration`), which tells the services where the signing
//! keys are and the edge where browsers sign in, refresh and sign out.
//!
//! Discovery checks that the document's `issuer` is exactly the configured one (OIDC Discovery
//! §4.3): a document served for another issuer, or rewritten on the way, is refused rather than
//! followed.

use crate::AuthError;
use std::path::Path;
use std::time::Duration;

/// Largest discovery document accepted; real ones are a few kilobytes.
const MAX_DISCOVERY_BYTES: usize = 256 * 1024;

/// Most certificates an extra CA file may hold; a bundle of a few private roots and
/// intermediates, not a whole trust store.
pub const MAX_EXTRA_CA_CERTS: usize = 64;

/// The HTTP client for the IdP: the system's CA roots (the OS trust store, where a company
/// installs its own roots), plus every certificate in `ca_file` when given. No redirects are
/// followed (a discovery document or key set that moved is a configuration to fix, not a hop
/// to take silently); connect within 5 s, whole answer within 10 s.
pub fn idp_http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, AuthError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .tls_built_in_webpki_certs(false)
        .tls_built_in_native_certs(true);
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| AuthError::Config(format!("cannot build the HTTP client for the IdP: {e}")))
}

/// The certificates of a PEM CA file: at least one, at most [`MAX_EXTRA_CA_CERTS`].
fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, AuthError> {
    let pem = std::fs::read(path).map_err(|e| AuthError::key_file(path, e))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| AuthError::key_file(path, format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(AuthError::key_file(
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    if certs.len() > MAX_EXTRA_CA_CERTS {
        return Err(AuthError::key_file(
            path,
            format!("holds more than {MAX_EXTRA_CA_CERTS} certificates"),
        ));
    }
    Ok(certs)
}

/// Where an issuer's discovery document is: the issuer without a trailing `/`, then
/// `/.well-known/openid-configuration` (OIDC Discovery §4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// What discovery found: the parts of the provider metadata Hush uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The issuer, equal to the configured one.
    pub issuer: String,
    /// Where the signing keys are (required).
    pub jwks_uri: String,
    /// Where browsers sign in.
    pub authorization_endpoint: Option<String>,
    /// Where the app exchanges a code or a refresh token.
    pub token_endpoint: Option<String>,
    /// Where browsers sign out at the IdP (RP-initiated logout), when the IdP offers it.
    pub end_session_endpoint: Option<String>,
}

/// Why discovery failed: worth retrying (the IdP did not answer well) or not (it answered with
/// a document Hush must not use).
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// No usable answer (network, TLS, HTTP status, size): retry later.
    #[error("the discovery document at {url} could not be fetched: {cause:#}")]
    Unreachable {
        /// The document's URL.
        url: String,
        /// What went wrong.
        cause: anyhow::Error,
    },
    /// An answer that must not be used (another issuer, no `jwks_uri`, …): fix the
    /// configuration (or the IdP).
    #[error("the discovery document at {url} is refused: {reason}")]
    Refused {
        /// The document's URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Fetches and checks `issuer`'s discovery document.
pub async fn discover(client: &reqwest::Client, issuer: &str) -> Result<Discovery, DiscoveryError> {
    let url = discovery_url(issuer);
    let doc = fetch_json(client, &url)
        .await
        .map_err(|cause| DiscoveryError::Unreachable {
            url: url.clone(),
            cause,
        })?;
    parse_discovery(issuer, &doc).map_err(|reason| DiscoveryError::Refused { url, reason })
}

/// Checks a discovery document against the configured `issuer` and reads what Hush uses.
pub fn parse_discovery(issuer: &str, doc: &serde_json::Value) -> Result<Discovery, String> {
    let said = doc
        .get("issuer")
        .and_then(|v| v.as_str())
        .ok_or("it has no 'issuer'")?;
    // Exactly, as OIDC Discovery §4.3 says: no trimming, no case folding.
    if said != issuer {
        return Err(format!(
            "its issuer {said:?} is not the configured issuer {issuer:?} (they must be equal, \
             character for character)"
        ));
    }
    let endpoint = |name: &str| -> Result<Option<String>, String> {
        match doc.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => {
                let s = v.as_str().ok_or(format!("'{name}' is not a string"))?;
                let u =
                    reqwest::Url::parse(s).map_err(|e| format!("'{name}' is not a URL: {e}"))?;
                if !matches!(u.scheme(), "http" | "https") {
                    return Err(format!("'{name}' is not an http or https URL"));
                }
                Ok(Some(s.to_string()))
            }
        }
    };
    Ok(Discovery {
        issuer: said.to_string(),
        jwks_uri: endpoint("jwks_uri")?.ok_or("it has no 'jwks_uri'")?,
        authorization_endpoint: endpoint("authorization_endpoint")?,
        token_endpoint: endpoint("token_endpoint")?,
        end_session_endpoint: endpoint("end_session_endpoint")?,
    })
}

/// A JSON document of at most [`MAX_DISCOVERY_BYTES`].
pub(crate) async fn fetch_json(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<serde_json::Value> {
    let res = client.get(url).send().await?.error_for_status()?;
    if res
        .content_length()
        .is_some_and(|n| n > MAX_DISCOVERY_BYTES as u64)
    {
        anyhow::bail!("the document is larger than {MAX_DISCOVERY_BYTES} bytes");
    }
    let body = res.bytes().await?;
    if body.len() > MAX_DISCOVERY_BYTES {
        anyhow::bail!("the document is larger than {MAX_DISCOVERY_BYTES} bytes");
    }
    Ok(serde_json::from_slice(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISSUER: &str = "https://idp.example/realms/corp";

    #[test]
    fn the_document_is_under_the_issuer_without_its_trailing_slash() {
        assert_eq!(
            discovery_url("https://idp.example/realms/corp/"),
            "https://idp.example/realms/corp/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url(ISSUER),
            "https://idp.example/realms/corp/.well-known/openid-configuration"
        );
    }

    #[test]
    fn endpoints_are_read_and_the_issuer_must_match_exactly() {
        let doc = json!({
            "issuer": ISSUER,
            "jwks_uri": "https://idp.example/keys",
            "authorization_endpoint": "https://idp.example/auth",
            "token_endpoint": "https://idp.example/token",
            "end_session_endpoint": "https://idp.example/logout",
        });
        let d = parse_discovery(ISSUER, &doc).unwrap();
        assert_eq!(d.jwks_uri, "https://idp.example/keys");
        assert_eq!(
            d.token_endpoint.as_deref(),
            Some("https://idp.example/token")
        );
        assert_eq!(
            d.end_session_endpoint.as_deref(),
            Some("https://idp.example/logout")
        );
        for other in [
            "https://idp.example/realms/corp/",
            "https://IDP.example/realms/corp",
            "https://idp.example/realms/other",
        ] {
            let err = parse_discovery(other, &doc).unwrap_err();
            assert!(err.contains("not the configured issuer"), "{err}");
        }
    }

    #[test]
    fn a_document_without_keys_or_with_odd_endpoints_is_refused() {
        let no_keys = json!({ "issuer": ISSUER });
        assert!(parse_discovery(ISSUER, &no_keys)
            .unwrap_err()
            .contains("jwks_uri"));
        let odd = json!({ "issuer": ISSUER, "jwks_uri": "file:///etc/passwd" });
        assert!(parse_discovery(ISSUER, &odd)
            .unwrap_err()
            .contains("http or https"));
        let not_text = json!({ "issuer": ISSUER, "jwks_uri": "https://k", "token_endpoint": 7 });
        assert!(parse_discovery(ISSUER, &not_text)
            .unwrap_err()
            .contains("not a string"));
        let no_end_session = json!({ "issuer": ISSUER, "jwks_uri": "https://idp.example/k" });
        assert_eq!(
            parse_discovery(ISSUER, &no_end_session)
                .unwrap()
                .end_session_endpoint,
            None
        );
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = idp_http_client(Some(&empty)).unwrap_err().to_string();
        assert!(err.contains("PEM"), "{err}");
        let missing = dir.path().join("missing.pem");
        assert!(idp_http_client(Some(&missing)).is_err());
        idp_http_client(None).expect("the system roots alone");
    }
}
