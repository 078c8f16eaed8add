//! Claim rules: an owner's conditions over the claims of the requester's token that approve a
//! request to join at once, with no human seeing it — no request row is written, so no owner
//! learns who joined this way.
//!
//! A document holds rules; a caller matches when **any** rule matches, and a rule matches when
//! **all** of its conditions do. A condition names a claim (a dotted path reaches into objects:
//! `org.country`) and either `equals` one value or is `in` a list. A claim that is a list (e.g.
//! `groups`) matches when any of its items does; numbers and booleans compare as their JSON
//! text (`3`, `true`); a missing claim never matches. Rules apply only while the group's join
//! policy is `approval`, and only after the group's label has admitted the caller.

use crate::error::ApiError;
use crate::extract::GroupPath;
use crate::limits::Action;
use crate::AppState;
use auth::Caller;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use service_kit::{AppJson, Problem};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Most rules in one document.
pub const MAX_RULES: usize = 20;
/// Most conditions in one rule.
pub const MAX_CONDITIONS: usize = 10;
/// Most values one `in` lists.
pub const MAX_VALUES: usize = 100;
/// Longest claim name, in characters.
pub const MAX_CLAIM_NAME: usize = 128;
/// Longest value, in characters.
pub const MAX_VALUE: usize = 256;

/// The claim rules routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_rules, put_rules))
}

/// A group's claim rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"rules": [{"all": [
    {"claim": "department", "in": ["Legal", "HR"]},
    {"claim": "country", "equals": "DE"}
]}]}))]
pub struct ClaimRules {
    /// Any one matching rule approves; an empty list approves no one. At most 20 rules.
    #[schema(max_items = 20)]
    pub rules: Vec<ClaimRule>,
}

/// Conditions that must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRule {
    /// At least one condition, at most 10.
    #[schema(min_items = 1, max_items = 10)]
    pub all: Vec<Condition>,
}

/// One condition on one claim: exactly one of `equals` and `in`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The claim's name; a dotted path (`org.country`) reaches into objects. Not blank, no
    /// control characters, at most 128 characters.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub claim: String,
    /// The claim must equal this value (not blank, no control characters, at most 256
    /// characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub equals: Option<String>,
    /// The claim must equal one of these values: 1 to 100 of them, each as `equals`.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 100)]
    pub in_: Option<Vec<String>>,
}

impl ClaimRules {
    /// Checks the document is usable, saying where it is not.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.len() > MAX_RULES {
            return Err(format!("rules: at most {MAX_RULES} rules"));
        }
        for (r, rule) in self.rules.iter().enumerate() {
            // An empty rule would match everyone: an open group under a label that may not
            // allow one. Say so rather than guess.
            if rule.all.is_empty() {
                return Err(format!(
                    "rules[{r}].all: a rule needs at least one condition"
                ));
            }
            if rule.all.len() > MAX_CONDITIONS {
                return Err(format!(
                    "rules[{r}].all: at most {MAX_CONDITIONS} conditions"
                ));
            }
            for (c, cond) in rule.all.iter().enumerate() {
                cond.validate()
                    .map_err(|e| format!("rules[{r}].all[{c}]: {e}"))?;
            }
        }
        Ok(())
    }

    /// Whether `claims` satisfy any rule.
    pub fn matches(&self, claims: &Map<String, Value>) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.all.iter().all(|c| c.matches(claims)))
    }
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if s.chars().count() > max {
        return Err(format!("{what} must be at most {max} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(())
}

impl Condition {
    fn validate(&self) -> Result<(), String> {
        check_text("claim", &self.claim, MAX_CLAIM_NAME)?;
        match (&self.equals, &self.in_) {
            (Some(v), None) => check_text("equals", v, MAX_VALUE),
            (None, Some(values)) => {
                if values.is_empty() {
                    return Err("in must list at least one value".into());
                }
                if values.len() > MAX_VALUES {
                    return Err(format!("in must list at most {MAX_VALUES} values"));
                }
                values
                    .iter()
                    .try_for_each(|v| check_text("in", v, MAX_VALUE))
            }
            _ => Err("give exactly one of equals and in".into()),
        }
    }

    fn accepts(&self, value: &str) -> bool {
        match (&self.equals, &self.in_) {
            (Some(v), _) => v == value,
            (None, Some(values)) => values.iter().any(|v| v == value),
            (None, None) => false,
        }
    }

    fn matches(&self, claims: &Map<String, Value>) -> bool {
        let Some(value) = auth::claim(claims, &self.claim) else {
            return false;
        };
        match value {
            Value::Array(items) => items
                .iter()
                .any(|v| scalar(v).is_some_and(|s| self.accepts(&s))),
            v => scalar(v).is_some_and(|s| self.accepts(&s)),
        }
    }
}

/// A scalar claim as text; objects, lists and null are not values a rule can equal.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The group's stored rules (none when it has none).
pub(crate) async fn load(state: &AppState, group: domain::GroupId) -> Result<ClaimRules, ApiError> {
    match state.store.claim_rules(group).await? {
        None => Ok(ClaimRules::default()),
        // Only validated documents are stored; one that does not parse approves no one.
        Some(text) => Ok(serde_json::from_str(&text).unwrap_or_else(|_| {
            tracing::error!("stored claim rules do not parse; treating them as none");
            ClaimRules::default()
        })),
    }
}

/// Reads a group's claim rules (owners only).
#[utoipa::path(
    get,
    path = "/membership/v1/groups/{id}/claim-rules",
    tag = "owners",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The group's claim rules (`{\"rules\": []}` when it has none).", body = ClaimRules),
        (status = "4XX", description = "`401` No valid bearer token. `403` `not-owner`: only the group's owners may read them (the same answer when no group has this id). `422` The group id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` control-api or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_rules(
    State(state): State<AppState>,
    caller: Caller,
    GroupPath(id): GroupPath,
) -> Result<AppJson<ClaimRules>, ApiError> {
    state.owned_group(&caller, id).await?;
    Ok(AppJson(load(&state, id).await?))
}

/// Replaces a group's claim rules (owners only).
///
/// A requester whose token's claims satisfy any rule is admitted at once when they ask to join
/// (join policy `approval`), after the label's check, and **no request is recorded**: the
/// owners do not learn who joined this way. `{"rules": []}` removes every rule.
#[utoipa::path(
    put,
    path = "/membership/v1/groups/{id}/claim-rules",
    tag = "owners",
    params(("id" = String, Path, format = Uuid, description = "The group's id.")),
    request_body = ClaimRules,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rules now in force.", body = ClaimRules),
        (status = "4XX", description = "`400` The body is not JSON. `401` No valid bearer token. `403` `not-owner`: only the group's owners may set them (the same answer when no group has this id). `415` The body is not sent as application/json. `422` The group id is not a UUID, or the rules are not usable (the detail says where). `429` Too many owner changes by this caller; see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs. `503` control-api or the identity provider is not answering; retry later.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn put_rules(
    State(state): State<AppState>,
    caller: Caller,
    GroupPath(id): GroupPath,
    AppJson(rules): AppJson<ClaimRules>,
) -> Result<AppJson<ClaimRules>, ApiError> {
    state.limit(Action::OwnerWrite, &caller).await?;
    state.owned_group(&caller, id).await?;
    rules.validate().map_err(ApiError::Invalid)?;
    let stored = if rules.rules.is_empty() {
        None
    } else {
        Some(
            serde_json::to_string(&rules)
                .map_err(|_| ApiError::Invalid("the rules cannot be stored".into()))?,
        )
    };
    state
        .store
        .set_claim_rules(id, stored.as_deref(), state.clock.now_ms())
        .await?;
    Ok(AppJson(rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(v: Value) -> ClaimRules {
        serde_json::from_value(v).unwrap()
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn any_rule_all_conditions() {
        let r = rules(json!({"rules": [
            {"all": [{"claim": "department", "in": ["Legal", "HR"]}, {"claim": "country", "equals": "DE"}]},
            {"all": [{"claim": "role", "equals": "counsel"}]}
        ]}));
        assert!(r.validate().is_ok());
        assert!(r.matches(&claims(json!({"department": "HR", "country": "DE"}))));
        assert!(!r.matches(&claims(json!({"department": "HR", "country": "FR"}))));
        assert!(!r.matches(&claims(json!({"department": "Sales", "country": "DE"}))));
        assert!(r.matches(&claims(json!({"role": "counsel"}))));
        assert!(!r.matches(&claims(json!({}))));
        assert!(!ClaimRules::default().matches(&claims(json!({"department": "HR"}))));
    }

    #[test]
    fn lists_nested_claims_numbers_and_booleans() {
        let r = rules(json!({"rules": [{"all": [
            {"claim": "groups", "equals": "erg-legal"},
            {"claim": "org.country", "in": ["DE", "AT"]},
            {"claim": "level", "equals": "3"},
            {"claim": "verified", "equals": "true"}
        ]}]}));
        let ok = json!({"groups": ["x", "erg-legal"], "org": {"country": "AT"}, "level": 3, "verified": true});
        assert!(r.matches(&claims(ok.clone())));
        let mut wrong = ok;
        wrong["groups"] = json!(["x"]);
        assert!(!r.matches(&claims(wrong)));
        // Values are compared exactly: no case folding, no substring.
        let r = rules(json!({"rules": [{"all": [{"claim": "d", "equals": "Legal"}]}]}));
        assert!(!r.matches(&claims(json!({"d": "legal"}))));
        assert!(!r.matches(&claims(json!({"d": "Legal dept"}))));
        assert!(!r.matches(&claims(json!({"d": {"Legal": 1}}))));
    }

    #[test]
    fn unusable_documents_are_refused_with_where() {
        let cases = [
            (
                json!({"rules": [{"all": []}]}),
                "rules[0].all: a rule needs at least one condition",
            ),
            (
                json!({"rules": [{"all": [{"claim": "d"}]}]}),
                "rules[0].all[0]: give exactly one of equals and in",
            ),
            (
                json!({"rules": [{"all": [{"claim": "d", "equals": "x", "in": ["y"]}]}]}),
                "rules[0].all[0]: give exactly one of equals and in",
            ),
            (
                json!({"rules": [{"all": [{"claim": "d", "in": []}]}]}),
                "rules[0].all[0]: in must list at least one value",
            ),
            (
                json!({"rules": [{"all": [{"claim": " ", "equals": "x"}]}]}),
                "rules[0].all[0]: claim must not be empty",
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(rules(doc).validate().unwrap_err(), want);
        }
        let many = ClaimRules {
            rules: vec![
                ClaimRule {
                    all: vec![Condition {
                        claim: "d".into(),
                        equals: Some("x".into()),
                        in_: None
                    }]
                };
                MAX_RULES + 1
            ],
        };
        assert!(many.validate().is_err());
        assert!(serde_json::from_value::<ClaimRules>(
            json!({"rules": [{"all": [{"claim": "d", "equals": "x", "not": 1}]}]})
        )
        .is_err());
    }
}
