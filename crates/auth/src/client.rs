//! The HTTP side of a client one Hush service keeps of another (the tenant client, control-api's
//! internal lookup client): a checked base URL, one pooled connection client that never follows
//! redirects, and requests that each carry a fresh service token for the callee.

use crate::ServiceSigner;
use domain::ServiceName;
use std::time::Duration;

/// A service's way to call another service. Cheap to clone (the pool and the key are shared).
#[derive(Clone)]
pub struct ServiceClient {
    base: String,
    http: reqwest::Client,
    signer: ServiceSigner,
    audience: ServiceName,
}

/// The base URL and who is calling whom; never the key.
impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("base", &self.base)
            .field("service", &self.signer.service())
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    /// A client of `audience` at `base_url` (e.g. `http://isolated-tenant:8083`) that signs its
    /// tokens with `signer`. Fails with a sentence saying why when the URL is not http(s) or
    /// the connection client cannot be built.
    pub fn new(
        base_url: impl Into<String>,
        signer: ServiceSigner,
        audience: ServiceName,
        connect: Duration,
        request: Duration,
    ) -> Result<Self, String> {
        let base = base_url.into().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "the {} URL must start with http:// or https://",
                audience.as_str()
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            // No Hush service redirects; following one could send a token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| "could not build the HTTP client".to_string())?;
        Ok(Self {
            base,
            http,
            signer,
            audience,
        })
    }

    /// The base URL this client talks to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A request to `path` (under the base URL) with this service's token for the audience:
    /// short-lived, and reused for at most half its life ([`crate::ServiceSigner::token`]).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let token = self.signer.token(self.audience);
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }
}
