//! Break-glass (INV-8): [`TenantClient::break_glass`] calls the tenant's break-glass routes
//! (`tenant_api::breakglass`), which only control-api may call, with the acting user's own
//! token, and passes the tenant's answer (or problem) through unchanged.

use crate::{transport, TenantClient, TenantError};
use reqwest::Method;
use tenant_api::breakglass::USER_TOKEN_HEADER;

impl TenantClient {
    /// Calls a break-glass route with the acting user's own token and answers the tenant's
    /// status and JSON body as they are (success or problem), so control-api can pass them
    /// through. Only transport failures and 5xx are errors.
    pub async fn break_glass(
        &self,
        path: &str,
        user_token: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), TenantError> {
        let mut req = self
            .request(Method::POST, path)
            .header(USER_TOKEN_HEADER, user_token);
        if let Some(body) = body {
            req = req.json(body);
        }
        passed_through(req).await
    }

    /// Reads a break-glass list (`GET`, path with its query) with the acting user's own token;
    /// answers like [`Self::break_glass`].
    pub async fn break_glass_list(
        &self,
        path_and_query: &str,
        user_token: &str,
    ) -> Result<(u16, serde_json::Value), TenantError> {
        let req = self
            .request(Method::GET, path_and_query)
            .header(USER_TOKEN_HEADER, user_token);
        passed_through(req).await
    }
}

/// Sends `req`; answers the status and JSON body as they are, or an error on a transport
/// failure or a 5xx.
async fn passed_through(
    req: reqwest::RequestBuilder,
) -> Result<(u16, serde_json::Value), TenantError> {
    let res = req.send().await.map_err(|e| transport(&e))?;
    let status = res.status();
    if status.is_server_error() {
        return Err(TenantError::Unavailable(format!(
            "status {}",
            status.as_u16()
        )));
    }
    let body = res
        .json::<serde_json::Value>()
        .await
        .unwrap_or(serde_json::Value::Null);
    Ok((status.as_u16(), body))
}
