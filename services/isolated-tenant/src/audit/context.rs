//! Who is calling, for the events a request appends: the calling service and the request id
//! (the `x-request-id` the tenant sees). A plain value, passed down from the handler to the
//! append: the [`crate::Permit`] extractor builds it from the verified caller and the request's
//! header ([`crate::Permit::context`]); work outside a request (re-sealing from the command
//! line, tests calling the store) uses [`Context::tenant`].

use axum::http::HeaderMap;

/// Longest request id kept in an event; longer ones are cut (they come from callers).
pub const MAX_REQUEST_ID: usize = 128;

/// The caller as far as the audit chain knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The calling service; `None` when the tenant acts on its own.
    pub service: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
}

impl Context {
    /// The tenant itself, outside any request: no calling service, no request id.
    pub const fn tenant() -> Self {
        Self {
            service: None,
            request_id: None,
        }
    }

    /// A request from `service`, with the request id its `headers` carry ([`request_id`]).
    pub fn request(service: &str, headers: &HeaderMap) -> Self {
        Self {
            service: Some(service.to_string()),
            request_id: request_id(headers),
        }
    }

    /// The service to record: the caller, or the tenant itself.
    pub fn service(&self) -> &str {
        self.service.as_deref().unwrap_or("isolated-tenant")
    }
}

/// The request id `headers` carry, kept only as ASCII graphic characters and cut to
/// [`MAX_REQUEST_ID`] (it comes from callers); `None` when nothing is left.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(service_kit::http::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.chars()
                .filter(|c| c.is_ascii_graphic())
                .take(MAX_REQUEST_ID)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_id(id: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            service_kit::http::REQUEST_ID,
            HeaderValue::from_str(id).unwrap(),
        );
        headers
    }

    #[test]
    fn a_request_id_keeps_only_ascii_graphic_characters_up_to_the_limit() {
        assert_eq!(request_id(&with_id("req 42")).as_deref(), Some("req42"));
        let long = "x".repeat(MAX_REQUEST_ID + 10);
        assert_eq!(
            request_id(&with_id(&long)).map(|id| id.len()),
            Some(MAX_REQUEST_ID)
        );
        assert_eq!(request_id(&with_id("   ")), None);
        assert_eq!(request_id(&HeaderMap::new()), None);
    }

    #[test]
    fn the_tenant_records_itself_without_a_request_id() {
        let context = Context::tenant();
        assert_eq!(context.service(), "isolated-tenant");
        assert_eq!(context.request_id, None);
        let context = Context::request("control-api", &with_id("abc"));
        assert_eq!(context.service(), "control-api");
        assert_eq!(context.request_id.as_deref(), Some("abc"));
    }
}
