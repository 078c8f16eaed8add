//! What every service's OpenAPI document shares: the route that serves it, and the bearer-token
//! security schemes its routes refer to. Each service describes its own API with
//! `#[derive(utoipa::OpenApi)]`; these keep the pieces around that description alike.

use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi;

/// The route that serves `doc` as JSON at `path`, to anyone. [`assemble`](crate::assemble)
/// adds it; a service assembled with
/// [`assemble_with_own_limits`](crate::assemble_with_own_limits) merges it into its API when
/// its document is public.
pub fn route<S>(path: &str, doc: OpenApi) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    // Built once; each request clones it out of the `Arc` to serialise it.
    let doc = Arc::new(doc);
    Router::new().route(path, get(move || async move { Json(doc.as_ref().clone()) }))
}

/// A bearer-token security scheme of an OpenAPI document: a value for
/// `#[openapi(modifiers(&…))]`, which adds it to the document's components under `name`. The
/// derive takes a bare name there, so a service names its schemes as `const`s (or imports
/// [`USER_TOKEN`]).
#[derive(Debug, Clone, Copy)]
pub struct BearerScheme {
    /// The key routes refer to, as in `security(("<name>" = []))`.
    pub name: &'static str,
    /// The token's format, shown to readers as `bearerFormat`.
    pub format: &'static str,
    /// Who issues the token and for what, when the format does not say enough.
    pub description: Option<&'static str>,
}

/// The scheme of the routes users call: `bearer`, a JWT from the company IdP.
pub const USER_TOKEN: BearerScheme = BearerScheme {
    name: "bearer",
    format: "JWT",
    description: None,
};

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some(self.format.into());
        scheme.description = self.description.map(Into::into);
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(self.name, SecurityScheme::Http(scheme));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::Modify;

    #[test]
    fn a_scheme_is_added_under_its_name_with_its_format_and_description() {
        let mut doc = utoipa::openapi::OpenApiBuilder::new().build();
        USER_TOKEN.modify(&mut doc);
        BearerScheme {
            name: "service",
            format: "JWT",
            description: Some("A service token."),
        }
        .modify(&mut doc);
        let v = serde_json::to_value(&doc).unwrap();
        let schemes = &v["components"]["securitySchemes"];
        assert_eq!(
            schemes["bearer"],
            serde_json::json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
        );
        assert_eq!(schemes["service"]["description"], "A service token.");
    }
}
