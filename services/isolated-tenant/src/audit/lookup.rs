//! For an investigation, with the seal keys: the pseudonyms under which a person appears in
//! the chain for one group (`hush audit pseudonyms`). Reads only.
//!
//! A person's membership events carry [`super::member`] over their identity id, which is
//! found here by the keyed tags of their subject or address; their own break-glass steps carry
//! [`super::person`] over their subject. An offboarded identity is gone from the database, so
//! its pseudonyms can no longer be recomputed from a subject: match them from a backup taken
//! before the offboarding.

use super::db::Db;
use crate::seal::SealKeys;
use domain::{Email, GroupId, Subject};
use uuid::Uuid;

/// The pseudonyms of one person in one group, under every configured key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pseudonyms {
    /// As the subject of membership events (one per identity and key).
    pub member: Vec<String>,
    /// As the actor of break-glass steps (one per key; needs a subject).
    pub person: Vec<String>,
}

/// The pseudonyms of the person with `subject` and/or `email` in `group`.
pub async fn pseudonyms(
    db: &Db,
    keys: &SealKeys,
    group: GroupId,
    subject: Option<&Subject>,
    email: Option<&Email>,
) -> Result<Pseudonyms, sqlx::Error> {
    let mut tags: Vec<Vec<u8>> = Vec::new();
    for k in keys.all() {
        if let Some(s) = subject {
            tags.push(k.subject_tag(s));
        }
        if let Some(e) = email {
            tags.push(k.email_tag(e));
        }
    }
    let mut ids: Vec<Uuid> = Vec::new();
    for tag in &tags {
        let sql = "SELECT id FROM identities WHERE subject_tag = $1 OR email_tag = $1";
        let found: Vec<Uuid> = match db {
            Db::Postgres(p) => sqlx::query_scalar(sql).bind(tag).fetch_all(p).await?,
            Db::Sqlite(p) => sqlx::query_scalar(sql).bind(tag).fetch_all(p).await?,
        };
        ids.extend(found);
    }
    ids.sort_unstable();
    ids.dedup();
    let mut out = Pseudonyms::default();
    for k in keys.all() {
        for id in &ids {
            out.member.push(super::member(k, group, *id));
        }
        if let Some(s) = subject {
            out.person.push(super::person(k, group, s));
        }
    }
    Ok(out)
}
