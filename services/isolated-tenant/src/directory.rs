//! Directory sync: the users the company's IdP provisions over SCIM 2.0. control-api speaks
//! SCIM to the IdP and keeps no copy; the tenant keeps each user sealed (`directory_users`,
//! found by keyed hashes of userName and externalId) and gives each an identity whose kind is
//! the directory's ([`crate::store::Store::sync_identity`]). A user made inactive, or deleted,
//! is offboarded: out of every group at once, every token issued before refused.
//!
//! Each write first stores the user, then brings the identity in line; both are idempotent, so
//! the IdP's retry of a failed call completes it.

use crate::access::{op, Permit};
use crate::audit::{db::now_ms, Context, NewEvent};
use crate::error::ApiError;
use crate::seal::SealKeys;
use crate::sql::{Pool, Sql};
use crate::AppState;
use axum::extract::{Path, State};
use http::StatusCode;
use service_kit::{AppJson, Problem};
use std::sync::Arc;
use tenant_api::directory::{
    DirectoryFind, DirectoryPage, DirectoryUser, DirectoryWrite, MAX_PAGE,
};
use tenant_api::IdentityRef;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// The directory routes, documented.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(get_user, replace_user, delete_user))
        .routes(routes!(find_users))
}

/// Why a directory call failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// No user has this id.
    #[error("no directory user with this id")]
    NotFound,
    /// Another user has the userName (ignoring case) or the externalId.
    #[error("another directory user has this userName or externalId")]
    Taken,
    /// A value is outside its limits.
    #[error("{0}")]
    Invalid(String),
}

impl DirectoryError {
    /// The problem+json body this error is answered with.
    pub fn problem(&self) -> Problem {
        match self {
            Self::NotFound => Problem::not_found(self.to_string()),
            Self::Taken => Problem::conflict(self.to_string()),
            Self::Invalid(_) => Problem::invalid(self.to_string()),
        }
    }
}

/// The directory's table.
#[derive(Clone)]
pub struct Directory {
    pool: Pool,
    keys: Arc<SealKeys>,
}

type Row = (Uuid, Vec<u8>, String);

const USER_NAME: &str = "userName";
const EXTERNAL_ID: &str = "externalId";

impl Directory {
    /// The directory on the tenant's database (already migrated by the main store).
    pub fn new(pool: Pool, keys: Arc<SealKeys>) -> Self {
        Self { pool, keys }
    }

    fn tags(&self, field: &str, value: &str) -> Vec<Vec<u8>> {
        let value = if field == USER_NAME {
            value.to_lowercase()
        } else {
            value.to_string()
        };
        self.keys
            .all()
            .iter()
            .map(|k| k.directory_tag(field, &value))
            .collect()
    }

    fn open(&self, row: &Row) -> Result<DirectoryUser, ApiError> {
        let (id, sealed, kid) = row;
        let key = self.keys.get(kid).map_err(crate::store::StoreError::from)?;
        let plain = key
            .open_directory(*id, sealed)
            .map_err(crate::store::StoreError::from)?;
        serde_json::from_slice(&plain).map_err(|_| {
            ApiError::Store(crate::store::StoreError::from(
                crate::seal::SealError::Corrupt("directory user"),
            ))
        })
    }

    /// Writes `user` (a new row, or the row with its id), unless another user holds its
    /// userName or externalId.
    async fn write(&self, user: &DirectoryUser, create: bool) -> Result<(), ApiError> {
        let key = self.keys.active();
        let plain = serde_json::to_vec(user).expect("a directory user serializes");
        let sealed = key.seal_directory(user.id, &plain);
        let name_tag = key.directory_tag(USER_NAME, &user.user.user_name.to_lowercase());
        let external_tag = user
            .user
            .external_id
            .as_ref()
            .map(|e| key.directory_tag(EXTERNAL_ID, e));
        let statement = if create {
            "INSERT INTO directory_users (id, user_name_tag, external_id_tag, sealed_user, key_id) \
             VALUES ($1, $2, $3, $4, $5)"
        } else {
            "UPDATE directory_users SET user_name_tag = $2, external_id_tag = $3, \
             sealed_user = $4, key_id = $5 WHERE id = $1"
        };
        let mut tx = self.pool.begin_write().await.map_err(db)?;
        let done = Sql::new(statement)
            .bind(user.id)
            .bind(name_tag)
            .bind(external_tag)
            .bind(sealed)
            .bind(key.id())
            .execute(&mut tx)
            .await;
        match done {
            Ok(0) => Err(DirectoryError::NotFound.into()),
            Ok(_) => {
                tx.commit().await.map_err(db)?;
                Ok(())
            }
            Err(e) if service_kit::db::is_unique_violation(&e) => {
                let _ = tx.rollback().await;
                Err(DirectoryError::Taken.into())
            }
            Err(e) => Err(db(e)),
        }
    }

    async fn get(&self, id: Uuid) -> Result<Option<DirectoryUser>, ApiError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let row: Option<Row> =
            Sql::new("SELECT id, sealed_user, key_id FROM directory_users WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut conn)
                .await
                .map_err(db)?;
        row.as_ref().map(|r| self.open(r)).transpose()
    }

    async fn delete(&self, id: Uuid) -> Result<(), ApiError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        Sql::new("DELETE FROM directory_users WHERE id = $1")
            .bind(id)
            .execute(&mut conn)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn find(&self, q: &DirectoryFind) -> Result<DirectoryPage, ApiError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut sql = Sql::new("SELECT id, sealed_user, key_id FROM directory_users");
        let mut clauses = Vec::new();
        if let Some(name) = &q.user_name {
            clauses.push((" user_name_tag IN ", self.tags(USER_NAME, name)));
        }
        if let Some(external) = &q.external_id {
            clauses.push((" external_id_tag IN ", self.tags(EXTERNAL_ID, external)));
        }
        for (i, (clause, tags)) in clauses.into_iter().enumerate() {
            sql = sql
                .push(if i == 0 { " WHERE" } else { " AND" })
                .push(clause);
            sql = sql.push("(").push_list(tags).push(")");
        }
        let rows: Vec<Row> = sql
            .push(" ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .map_err(db)?;
        let total = rows.len() as u64;
        let skip = usize::try_from(q.start_index.max(1) - 1).unwrap_or(usize::MAX);
        let take = usize::try_from(q.count.min(MAX_PAGE)).unwrap_or(0);
        let users = rows
            .iter()
            .skip(skip)
            .take(take)
            .map(|r| self.open(r))
            .collect::<Result<_, _>>()?;
        Ok(DirectoryPage { total, users })
    }
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::Store(crate::store::StoreError::Db(e))
}

/// Limits of what control-api writes.
fn checked(w: &DirectoryWrite) -> Result<(), ApiError> {
    if w.user_name.trim().is_empty() || w.user_name.chars().count() > 256 {
        return Err(DirectoryError::Invalid("userName: 1 to 256 characters".into()).into());
    }
    if w.external_id
        .as_ref()
        .is_some_and(|e| e.is_empty() || e.chars().count() > 256)
    {
        return Err(DirectoryError::Invalid("externalId: 1 to 256 characters".into()).into());
    }
    if !w.resource.is_object() {
        return Err(DirectoryError::Invalid("resource: must be an object".into()).into());
    }
    Ok(())
}

/// Brings the user's identity in line with the directory: an active user's identity has the
/// directory's kind (ending what it bars); an inactive one is offboarded.
async fn sync(state: &AppState, context: &Context, w: &DirectoryWrite) -> Result<(), ApiError> {
    if w.active {
        state
            .store
            .sync_identity(context, &w.subject, w.email.as_ref(), w.kind)
            .await?;
    } else {
        offboard(state, context, w).await?;
    }
    Ok(())
}

async fn offboard(state: &AppState, context: &Context, w: &DirectoryWrite) -> Result<(), ApiError> {
    let who = IdentityRef {
        subject: Some(w.subject.clone()),
        email: w.email.clone(),
    };
    state.store.offboard(context, &who).await?;
    Ok(())
}

async fn audit(state: &AppState, context: &Context, action: &str) -> Result<(), ApiError> {
    let pool = Pool::from(state.store.audit_db());
    let mut tx = pool.begin_write().await.map_err(db)?;
    tx.append(context, &[NewEvent::new(action, None)])
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| DirectoryError::Invalid("user id: must be a UUID".into()).into())
}

/// Creates a directory user, and the identity of the directory's kind behind it.
///
/// 409 when another user has the userName (ignoring case) or the externalId. Allowed to
/// control-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/directory/users",
    tag = "directory",
    request_body = DirectoryWrite,
    responses(
        (status = 201, description = "Created.", body = DirectoryUser),
        (status = 409, description = "Another user has the userName or the externalId.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` The calling service may not provision users. `413` The body is too large. `415` Not application/json. `422` A field is invalid.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_user(
    permit: Permit<op::Directory>,
    State(state): State<AppState>,
    AppJson(w): AppJson<DirectoryWrite>,
) -> Result<(StatusCode, AppJson<DirectoryUser>), ApiError> {
    checked(&w)?;
    let now = now_ms();
    let user = DirectoryUser {
        id: Uuid::new_v4(),
        user: w,
        created_ms: now,
        modified_ms: now,
        version: 1,
    };
    state.directory.write(&user, true).await?;
    sync(&state, permit.context(), &user.user).await?;
    audit(&state, permit.context(), "directory.user-created").await?;
    Ok((StatusCode::CREATED, AppJson(user)))
}

/// Reads a directory user. Allowed to control-api.
#[utoipa::path(
    get,
    path = "/tenant/v1/directory/users/{user_id}",
    tag = "directory",
    params(("user_id" = String, Path, format = Uuid, description = "The user's id.")),
    responses(
        (status = 200, description = "The user.", body = DirectoryUser),
        (status = "4XX", description = "`401` No service token, or one that does not verify. `403` The calling service may not read users. `404` No such user. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_user(
    _: Permit<op::Directory>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<AppJson<DirectoryUser>, ApiError> {
    let id = parse_id(&id)?;
    let user = state.directory.get(id).await?;
    user.map(AppJson)
        .ok_or_else(|| DirectoryError::NotFound.into())
}

/// Replaces a directory user, and brings its identity in line: the directory's kind (ending
/// the memberships it bars), or, when no longer active, offboarded. Allowed to control-api.
#[utoipa::path(
    put,
    path = "/tenant/v1/directory/users/{user_id}",
    tag = "directory",
    params(("user_id" = String, Path, format = Uuid, description = "The user's id.")),
    request_body = DirectoryWrite,
    responses(
        (status = 200, description = "The user as it is now.", body = DirectoryUser),
        (status = 409, description = "Another user has the userName or the externalId.", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` The calling service may not provision users. `404` No such user. `413` The body is too large. `415` Not application/json. `422` A field is invalid.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn replace_user(
    permit: Permit<op::Directory>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppJson(w): AppJson<DirectoryWrite>,
) -> Result<AppJson<DirectoryUser>, ApiError> {
    let id = parse_id(&id)?;
    checked(&w)?;
    let before = state
        .directory
        .get(id)
        .await?
        .ok_or(DirectoryError::NotFound)?;
    // A new subject is a new person to the tenant: the old one is offboarded.
    if before.user.subject != w.subject && before.user.active {
        offboard(&state, permit.context(), &before.user).await?;
    }
    let user = DirectoryUser {
        id,
        user: w,
        created_ms: before.created_ms,
        modified_ms: now_ms().max(before.modified_ms + 1),
        version: before.version + 1,
    };
    state.directory.write(&user, false).await?;
    sync(&state, permit.context(), &user.user).await?;
    audit(&state, permit.context(), "directory.user-replaced").await?;
    Ok(AppJson(user))
}

/// Deletes a directory user and offboards them. Idempotent. Allowed to control-api.
#[utoipa::path(
    delete,
    path = "/tenant/v1/directory/users/{user_id}",
    tag = "directory",
    params(("user_id" = String, Path, format = Uuid, description = "The user's id.")),
    responses(
        (status = 204, description = "Gone (or never there)."),
        (status = "4XX", description = "`401` No service token, or one that does not verify. `403` The calling service may not provision users. `422` The id is not a UUID.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_user(
    permit: Permit<op::Directory>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if let Some(user) = state.directory.get(id).await? {
        offboard(&state, permit.context(), &user.user).await?;
        state.directory.delete(id).await?;
        audit(&state, permit.context(), "directory.user-deleted").await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Finds directory users by userName (ignoring case) or externalId, or pages through all.
/// Allowed to control-api.
#[utoipa::path(
    post,
    path = "/tenant/v1/directory/users/find",
    tag = "directory",
    request_body = DirectoryFind,
    responses(
        (status = 200, description = "The users found, a page at a time.", body = DirectoryPage),
        (status = "4XX", description = "`400` The body is not JSON. `401` No service token, or one that does not verify. `403` The calling service may not read users. `413` The body is too large. `415` Not application/json. `422` A field is invalid.", body = Problem, content_type = "application/problem+json"),
        (status = "5XX", description = "`500` Something failed on our side; the request id identifies it in our logs.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn find_users(
    _: Permit<op::Directory>,
    State(state): State<AppState>,
    AppJson(q): AppJson<DirectoryFind>,
) -> Result<AppJson<DirectoryPage>, ApiError> {
    Ok(AppJson(state.directory.find(&q).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::CorporateDomains;
    use domain::{Email, IdentityKind, Subject};
    use service_kit::testing::TestDatabase;

    fn write(user_name: &str) -> DirectoryWrite {
        DirectoryWrite {
            user_name: user_name.into(),
            external_id: Some("ext-7781".into()),
            active: true,
            subject: Subject::parse(user_name).unwrap(),
            email: Some(Email::parse("dana.secret@corp.example").unwrap()),
            kind: IdentityKind::Guest,
            resource: serde_json::json!({"userName": user_name, "displayName": "Dana Secretname"}),
        }
    }

    /// INV-5 for the directory: its table holds tags, sealed bytes and key ids, never a name.
    #[tokio::test]
    async fn directory_users_are_sealed_and_found_only_by_keyed_tags_inv_5() {
        let db = TestDatabase::sqlite();
        let keys = Arc::new(SealKeys::parse(&SealKeys::generate_text()).unwrap());
        let store = crate::store::connect(db.url(), 2, keys.clone(), CorporateDomains::default())
            .await
            .unwrap();
        let dir = Directory::new(Pool::from(store.audit_db()), keys);
        let user = DirectoryUser {
            id: Uuid::new_v4(),
            user: write("Dana.Secret@corp.example"),
            created_ms: 1,
            modified_ms: 1,
            version: 1,
        };
        dir.write(&user, true).await.unwrap();
        // Found by userName ignoring case, and by externalId; the same answer as stored.
        let find = |user_name: Option<&str>, external_id: Option<&str>| DirectoryFind {
            user_name: user_name.map(str::to_string),
            external_id: external_id.map(str::to_string),
            start_index: 1,
            count: 10,
        };
        let page = dir
            .find(&find(Some("dana.secret@CORP.example"), None))
            .await
            .unwrap();
        assert_eq!(page.users, vec![user.clone()]);
        assert_eq!(
            dir.find(&find(None, Some("ext-7781"))).await.unwrap().total,
            1
        );
        assert_eq!(
            dir.find(&find(None, Some("EXT-7781"))).await.unwrap().total,
            0,
            "externalId is exact"
        );
        // A second user with the same userName (any case) is refused.
        let mut twin = user.clone();
        twin.id = Uuid::new_v4();
        twin.user.external_id = None;
        twin.user.user_name = "DANA.SECRET@corp.example".into();
        assert!(matches!(
            dir.write(&twin, true).await,
            Err(ApiError::Directory(DirectoryError::Taken))
        ));
        // The raw table: nothing readable.
        let mut conn = dir.pool.acquire().await.unwrap();
        type RawRow = (Vec<u8>, Option<Vec<u8>>, Vec<u8>, String);
        let rows: Vec<RawRow> = Sql::new(
            "SELECT user_name_tag, external_id_tag, sealed_user, key_id FROM directory_users",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(rows.len(), 1);
        let all: Vec<u8> = rows
            .iter()
            .flat_map(|(a, b, c, d)| {
                [
                    a.clone(),
                    b.clone().unwrap_or_default(),
                    c.clone(),
                    d.clone().into_bytes(),
                ]
            })
            .flatten()
            .collect();
        let text = String::from_utf8_lossy(&all).to_lowercase();
        for secret in ["dana", "secret", "ext-7781", "corp.example"] {
            assert!(!text.contains(secret), "{secret} is readable in the table");
        }
        dir.delete(user.id).await.unwrap();
        assert!(dir.get(user.id).await.unwrap().is_none());
    }
}
