//! The SQL of the store's roles ([`super::roles`]), written once for both backends.
//!
//! Every statement here is the same text on Postgres and SQLite. What differs between them is
//! not SQL but how they take locks, named once for every store in [`service_kit::sql::Dialect`]:
//! SQLite has one writer at a time, so a write transaction takes the database's write lock when
//! it begins (`BEGIN IMMEDIATE`, so it never has to upgrade a read lock and fail with
//! `SQLITE_BUSY`) and needs no row locks; Postgres writers run side by side, so they lock the
//! rows they read (`FOR SHARE` / `FOR UPDATE`). What else differs for the tenant alone (its
//! migrations, the bulk lane's pool, the audit chain's insert) is in `postgres.rs` and
//! `sqlite.rs`.
//!
//! Code here is generic over a [`SqlBackend`]: it writes a [`Statement`], runs it with
//! `DB::run` / `DB::rows` and reads a column with `DB::get` ([`crate::backend`]).

use super::roles::{
    group_key, AuditLog, Groups, Identities, IdentityRow, Locks, MemberRow, Memberships,
    Revocations, TagColumn, Tx,
};
use super::StoreError;
use crate::audit::{self, Context, NewEvent};
use crate::backend::{Column, Run, Statement};
use crate::seal::SealKey;
use async_trait::async_trait;
use domain::{CountBucket, EntryRule, GroupId, LabelName};
use service_kit::db;
use sqlx::Database;
use std::collections::HashSet;
use std::future::Future;
use tenant_api::ProvisionGroup;
use uuid::Uuid;

/// Rows per statement when one statement touches many rows: well under both backends' limit
/// on bound parameters (at most 6 per row).
pub(super) const CHUNK: usize = 500;

/// A database the tenant's store runs on: the shared SQL's needs ([`Run`], [`Column`], the
/// audit chain's [`audit::Append`]) and what differs, implemented in `postgres.rs` and
/// `sqlite.rs`.
pub trait SqlBackend:
    service_kit::sql::Dialect
    + Run
    + audit::Append
    + Column<Uuid>
    + Column<Vec<u8>>
    + Column<Option<Vec<u8>>>
    + Column<String>
    + Column<i64>
    + Column<Option<String>>
    + Column<Option<bool>>
    + Column<bool>
    + Column<Option<i64>>
    + Column<Option<Uuid>>
{
    /// A statement run on the bulk batches' own pool after each batch, out of the write turn.
    const AFTER_BULK_BATCH: Option<&'static str>;

    /// The functions that take a transaction-scoped lock on a 64-bit key, exclusive and
    /// shared, leaving nothing in the database's files ([`super::roles::Locks`]); `None` where
    /// a write transaction holds the whole database.
    const KEY_LOCKS: Option<(&'static str, &'static str)>;

    /// Lists the tenant's tables but the audit chain's, for the tests' dump.
    #[cfg(test)]
    const LIST_TABLES: &'static str;

    /// Brings `pool`'s schema up to date (the backend's embedded migrations).
    fn migrate(pool: &sqlx::Pool<Self>) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// The pool bulk batches use: at most `options`' connections, made lazily (on the bulk
    /// lane's threads, which then drive their sockets), to the database `connect` names.
    fn bulk_pool(
        options: sqlx::pool::PoolOptions<Self>,
        connect: &<Self::Connection as sqlx::Connection>::Options,
    ) -> sqlx::Pool<Self>;

    /// The audit chain's database handle on `pool`.
    fn audit_db(pool: sqlx::Pool<Self>) -> audit::Db;
}

/// Runs `statement` (no parameters) on a connection of `pool`.
pub(super) async fn execute<DB: SqlBackend>(
    pool: &sqlx::Pool<DB>,
    statement: &str,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    DB::run(&mut conn, Statement::new(statement)).await
}

/// A connection (or a transaction, through `&mut *tx`) on which the roles run: the one
/// implementation of [`Groups`], [`Identities`], [`Memberships`] and [`AuditLog`].
pub(super) struct Conn<'c, DB: Database>(pub &'c mut DB::Connection);

impl<DB: SqlBackend> Conn<'_, DB> {
    /// Runs `q`.
    async fn run(&mut self, q: Statement<DB>) -> Result<(), StoreError> {
        Ok(DB::run(self.0, q).await?)
    }

    /// Runs `q`; answers its rows.
    async fn rows(&mut self, q: Statement<DB>) -> Result<Vec<DB::Row>, StoreError> {
        Ok(DB::rows(self.0, q).await?)
    }

    /// Runs `q`; answers the first column of its rows.
    async fn column<T>(&mut self, q: Statement<DB>) -> Result<Vec<T>, StoreError>
    where
        DB: Column<T>,
    {
        let rows = self.rows(q).await?;
        Ok(rows
            .iter()
            .map(|r| DB::get(r, 0))
            .collect::<Result<_, _>>()?)
    }

    /// Runs `SELECT {select} … WHERE {column} IN (…)` over `values`, [`CHUNK`] of them a
    /// statement, each statement ending with `tail`; answers the first column of all rows.
    async fn column_in<T, V>(
        &mut self,
        select: &str,
        column: &str,
        values: &[V],
        tail: &str,
    ) -> Result<Vec<T>, StoreError>
    where
        DB: Column<T> + Column<V>,
        V: Clone,
    {
        let mut found = Vec::new();
        for chunk in values.chunks(CHUNK) {
            let mut q = Statement::new(select);
            q.in_list(column, chunk.iter().cloned());
            q.push(tail);
            found.extend(self.column::<T>(q).await?);
        }
        Ok(found)
    }

    /// Identity rows, read by `q` (which selects [`IDENTITY_COLUMNS`]).
    async fn identity_rows(&mut self, q: Statement<DB>) -> Result<Vec<IdentityRow>, StoreError> {
        let rows = self.rows(q).await?;
        Ok(rows
            .iter()
            .map(identity_row::<DB>)
            .collect::<Result<_, _>>()?)
    }

    /// Runs `INSERT INTO identities …` (or with `head`, an `UPDATE … FROM (VALUES …)`) over
    /// `rows`, [`CHUNK`] of them a statement, each ending with `tail`.
    async fn write_identities(
        &mut self,
        head: &str,
        rows: Vec<IdentityRow>,
        tail: &str,
    ) -> Result<(), StoreError> {
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<IdentityRow> = rows.by_ref().take(CHUNK).collect();
            let mut q = Statement::new(head);
            q.values(chunk, |b, r| {
                b.bind(r.id);
                b.bind(r.subject_tag);
                b.bind(r.email_tag);
                b.bind(r.sealed_profile);
                b.bind(r.key_id);
            });
            q.push(tail);
            self.run(q).await?;
        }
        Ok(())
    }

    /// Makes each (group, identity) of `pairs` a membership under `key`, [`CHUNK`] a
    /// statement, each ending with `tail`.
    async fn write_members(
        &mut self,
        key: &SealKey,
        pairs: &[(GroupId, Uuid)],
        tail: &str,
    ) -> Result<(), StoreError> {
        for chunk in pairs.chunks(CHUNK) {
            let mut q = Statement::new(
                "INSERT INTO memberships (member_tag, group_ref, sealed_identity, key_id) ",
            );
            q.values(chunk, |b, (g, identity)| {
                b.bind(key.member_tag(*g, *identity));
                b.bind(key.group_ref(*g));
                b.bind(key.seal_member(*g, *identity));
                b.bind(key.id().to_string());
            });
            q.push(tail);
            self.run(q).await?;
        }
        Ok(())
    }
}

/// The columns every identity query selects, in [`identity_row`] order.
const IDENTITY_COLUMNS: &str = "id, subject_tag, email_tag, sealed_profile, key_id";

/// `SELECT {IDENTITY_COLUMNS} FROM identities WHERE `.
fn select_identities<DB: SqlBackend>() -> Statement<DB> {
    Statement::new(format!("SELECT {IDENTITY_COLUMNS} FROM identities WHERE "))
}

fn identity_row<DB: SqlBackend>(row: &DB::Row) -> Result<IdentityRow, sqlx::Error> {
    Ok(IdentityRow {
        id: DB::get(row, 0)?,
        subject_tag: DB::get(row, 1)?,
        email_tag: DB::get(row, 2)?,
        sealed_profile: DB::get(row, 3)?,
        key_id: DB::get(row, 4)?,
    })
}

/// Statements that select a group by id.
const GROUP_BY_ID: &str = "SELECT group_id FROM distribution_groups WHERE group_id = ";

#[async_trait]
impl<DB: SqlBackend> Groups for Conn<'_, DB> {
    async fn create_group(&mut self, request: &ProvisionGroup) -> Result<bool, StoreError> {
        let mut q = Statement::new(
            "INSERT INTO distribution_groups (group_id, address, display_name, label_name, \
             guests_allowed, agents_allowed, group_type) ",
        );
        q.values([request], |b, r| {
            b.bind(*r.group_id.as_uuid());
            b.bind(r.address.as_str().to_string());
            b.bind(r.display_name.as_str().to_string());
            let rule = r.label.as_ref();
            b.bind(rule.map(|l| l.label.as_str().to_string()));
            b.bind(rule.map(|l| l.guests_allowed));
            b.bind(rule.map(|l| l.agents_allowed));
            b.bind(r.group_type.as_str().to_string());
        });
        q.push(" ON CONFLICT (group_id) DO NOTHING RETURNING group_id");
        match self.column::<Uuid>(q).await {
            Ok(created) => Ok(!created.is_empty()),
            Err(StoreError::Db(e)) if db::is_unique_violation(&e) => Err(StoreError::AddressTaken),
            Err(e) => Err(e),
        }
    }

    async fn group_for_update(&mut self, group: GroupId) -> Result<(String, String), StoreError> {
        let mut q = Statement::new(
            "SELECT address, display_name FROM distribution_groups WHERE group_id = ",
        );
        q.bind(*group.as_uuid());
        q.push(DB::FOR_UPDATE);
        let rows = self.rows(q).await?;
        let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
        Ok((DB::get(row, 0)?, DB::get(row, 1)?))
    }

    async fn rename_group(&mut self, group: GroupId, display_name: &str) -> Result<(), StoreError> {
        let mut q = Statement::new("UPDATE distribution_groups SET display_name = ");
        q.bind(display_name.to_string());
        q.push(" WHERE group_id = ");
        q.bind(*group.as_uuid());
        self.run(q).await
    }

    async fn hold_group(&mut self, group: GroupId) -> Result<(), StoreError> {
        self.lock_keys(&[group_key(group)], false).await?;
        let mut q = Statement::new(GROUP_BY_ID);
        q.bind(*group.as_uuid());
        let found = self.column::<Uuid>(q).await?;
        found.first().map(drop).ok_or(StoreError::GroupNotFound)
    }

    async fn lock_group(&mut self, group: GroupId) -> Result<bool, StoreError> {
        self.lock_keys(&[group_key(group)], true).await?;
        let mut q = Statement::new(GROUP_BY_ID);
        q.bind(*group.as_uuid());
        Ok(!self.column::<Uuid>(q).await?.is_empty())
    }

    async fn hold_groups(&mut self, groups: &[GroupId]) -> Result<HashSet<GroupId>, StoreError> {
        let keys: Vec<i64> = groups.iter().map(|g| group_key(*g)).collect();
        self.lock_keys(&keys, false).await?;
        let ids: Vec<Uuid> = groups.iter().map(|g| *g.as_uuid()).collect();
        let found: Vec<Uuid> = self
            .column_in(
                "SELECT group_id FROM distribution_groups WHERE ",
                "group_id",
                &ids,
                "",
            )
            .await?;
        Ok(found.into_iter().map(GroupId::from).collect())
    }

    async fn existing_groups(&mut self, groups: &[GroupId]) -> Result<Vec<GroupId>, StoreError> {
        let ids: Vec<Uuid> = groups.iter().map(|g| *g.as_uuid()).collect();
        let found: Vec<Uuid> = self
            .column_in(
                "SELECT group_id FROM distribution_groups WHERE ",
                "group_id",
                &ids,
                "",
            )
            .await?;
        let mut existing: Vec<GroupId> = found.into_iter().map(GroupId::from).collect();
        existing.sort_unstable();
        Ok(existing)
    }

    async fn delete_group(&mut self, group: GroupId) -> Result<(), StoreError> {
        let mut q = Statement::new("DELETE FROM distribution_groups WHERE group_id = ");
        q.bind(*group.as_uuid());
        self.run(q).await
    }

    async fn group_rules(
        &mut self,
        groups: &[GroupId],
    ) -> Result<Vec<(GroupId, Option<EntryRule>)>, StoreError> {
        let mut out = Vec::with_capacity(groups.len());
        for chunk in groups.chunks(CHUNK) {
            let mut q = Statement::new(
                "SELECT group_id, label_name, guests_allowed, agents_allowed \
                 FROM distribution_groups WHERE ",
            );
            q.in_list("group_id", chunk.iter().map(|g| *g.as_uuid()));
            for row in self.rows(q).await? {
                let group: Uuid = DB::get(&row, 0)?;
                let name: Option<String> = DB::get(&row, 1)?;
                let guests: Option<bool> = DB::get(&row, 2)?;
                let agents: Option<bool> = DB::get(&row, 3)?;
                let rule = match (name, guests, agents) {
                    (Some(name), Some(guests_allowed), Some(agents_allowed)) => Some(EntryRule {
                        label: LabelName::parse(&name)
                            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                        guests_allowed,
                        agents_allowed,
                    }),
                    _ => None,
                };
                out.push((GroupId::from(group), rule));
            }
        }
        Ok(out)
    }

    async fn set_group_rule(
        &mut self,
        group: GroupId,
        rule: &EntryRule,
        only_if_unknown: bool,
    ) -> Result<(), StoreError> {
        let mut q = Statement::new("UPDATE distribution_groups SET label_name = ");
        q.bind(rule.label.as_str().to_string());
        q.push(", guests_allowed = ");
        q.bind(rule.guests_allowed);
        q.push(", agents_allowed = ");
        q.bind(rule.agents_allowed);
        q.push(" WHERE group_id = ");
        q.bind(*group.as_uuid());
        if only_if_unknown {
            q.push(" AND label_name IS NULL");
        }
        self.run(q).await
    }

    async fn groups_under_label(&mut self, label: &LabelName) -> Result<Vec<GroupId>, StoreError> {
        let mut q = Statement::new("SELECT group_id FROM distribution_groups WHERE label_name = ");
        q.bind(label.as_str().to_string());
        q.push(" ORDER BY group_id");
        Ok(self
            .column::<Uuid>(q)
            .await?
            .into_iter()
            .map(GroupId::from)
            .collect())
    }
}

#[async_trait]
impl<DB: SqlBackend> Identities for Conn<'_, DB> {
    async fn find_identities(
        &mut self,
        subject_tags: Vec<Vec<u8>>,
        email_tags: Vec<Vec<u8>>,
    ) -> Result<Vec<IdentityRow>, StoreError> {
        let mut q = select_identities::<DB>();
        let clauses = [
            (TagColumn::Subject, subject_tags),
            (TagColumn::Email, email_tags),
        ];
        for (i, (column, tags)) in clauses
            .into_iter()
            .filter(|(_, t)| !t.is_empty())
            .enumerate()
        {
            if i > 0 {
                q.push(" OR ");
            }
            q.in_list(column.name(), tags);
        }
        q.push(" ORDER BY id");
        self.identity_rows(q).await
    }

    async fn identity_ids(
        &mut self,
        column: TagColumn,
        tags: &[Vec<u8>],
    ) -> Result<Vec<Uuid>, StoreError> {
        self.column_in("SELECT id FROM identities WHERE ", column.name(), tags, "")
            .await
    }

    async fn identities_by_id(&mut self, ids: &[Uuid]) -> Result<Vec<IdentityRow>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let mut q = select_identities::<DB>();
            q.in_list("id", chunk.iter().copied());
            q.push(" ORDER BY id");
            found.extend(self.identity_rows(q).await?);
        }
        Ok(found)
    }

    async fn identities_after(
        &mut self,
        after: Uuid,
        limit: usize,
    ) -> Result<Vec<IdentityRow>, StoreError> {
        let mut q = select_identities::<DB>();
        q.push("id > ");
        q.bind(after);
        q.push(" ORDER BY id LIMIT ");
        q.bind(i64::try_from(limit).unwrap_or(i64::MAX));
        q.push(DB::FOR_UPDATE);
        self.identity_rows(q).await
    }

    async fn taken_email_tags(&mut self, tags: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.column_in(
            "SELECT email_tag FROM identities WHERE ",
            "email_tag",
            tags,
            "",
        )
        .await
    }

    async fn insert_identities(&mut self, rows: Vec<IdentityRow>) -> Result<(), StoreError> {
        self.write_identities(INSERT_IDENTITIES, rows, "").await
    }

    async fn insert_identity_if_absent(&mut self, row: IdentityRow) -> Result<(), StoreError> {
        self.write_identities(INSERT_IDENTITIES, vec![row], " ON CONFLICT (id) DO NOTHING")
            .await
    }

    async fn update_identities(&mut self, rows: Vec<IdentityRow>) -> Result<(), StoreError> {
        let head = "UPDATE identities SET subject_tag = v.column2, email_tag = v.column3, \
                    sealed_profile = v.column4, key_id = v.column5 FROM (";
        self.write_identities(head, rows, ") AS v WHERE identities.id = v.column1")
            .await
    }

    async fn delete_identities(&mut self, ids: &[Uuid]) -> Result<(), StoreError> {
        let mut q = Statement::new("DELETE FROM identities WHERE ");
        q.in_list("id", ids.iter().copied());
        self.run(q).await
    }
}

/// The head of every insert of identity rows.
const INSERT_IDENTITIES: &str =
    "INSERT INTO identities (id, subject_tag, email_tag, sealed_profile, key_id) ";

#[async_trait]
impl<DB: SqlBackend> Memberships for Conn<'_, DB> {
    async fn insert_members(
        &mut self,
        key: &SealKey,
        pairs: &[(GroupId, Uuid)],
    ) -> Result<(), StoreError> {
        self.write_members(key, pairs, " ON CONFLICT (member_tag) DO NOTHING")
            .await
    }

    async fn insert_new_members(
        &mut self,
        key: &SealKey,
        pairs: &[(GroupId, Uuid)],
    ) -> Result<(), StoreError> {
        self.write_members(key, pairs, "").await
    }

    async fn delete_members(&mut self, tags: &[Vec<u8>]) -> Result<(), StoreError> {
        for chunk in tags.chunks(CHUNK) {
            let mut q = Statement::new("DELETE FROM memberships WHERE ");
            q.in_list("member_tag", chunk.iter().cloned());
            self.run(q).await?;
        }
        Ok(())
    }

    async fn delete_group_members(&mut self, refs: &[Uuid]) -> Result<(), StoreError> {
        let mut q = Statement::new("DELETE FROM memberships WHERE ");
        q.in_list("group_ref", refs.iter().copied());
        self.run(q).await
    }

    async fn sealed_members(
        &mut self,
        refs: &[Uuid],
    ) -> Result<Vec<(Vec<u8>, String)>, StoreError> {
        let mut q = Statement::new("SELECT sealed_identity, key_id FROM memberships WHERE ");
        q.in_list("group_ref", refs.iter().copied());
        let rows = self.rows(q).await?;
        Ok(rows
            .iter()
            .map(|r| Ok((DB::get(r, 0)?, DB::get(r, 1)?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn any_member(&mut self, tags: &[Vec<u8>]) -> Result<bool, StoreError> {
        let mut q = Statement::new("SELECT member_tag FROM memberships WHERE ");
        q.in_list("member_tag", tags.iter().cloned());
        q.push(" LIMIT 1");
        Ok(!self.column::<Vec<u8>>(q).await?.is_empty())
    }

    async fn present_tags(&mut self, tags: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.column_in(
            "SELECT member_tag FROM memberships WHERE ",
            "member_tag",
            tags,
            "",
        )
        .await
    }

    async fn memberships_after(
        &mut self,
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<MemberRow>, StoreError> {
        let mut q = Statement::new(
            "SELECT member_tag, group_ref, sealed_identity, key_id FROM memberships \
             WHERE member_tag > ",
        );
        q.bind(after.to_vec());
        q.push(" ORDER BY member_tag LIMIT ");
        q.bind(i64::try_from(limit).unwrap_or(i64::MAX));
        q.push(DB::FOR_UPDATE);
        let rows = self.rows(q).await?;
        let read = |r: &DB::Row| -> Result<MemberRow, sqlx::Error> {
            Ok(MemberRow {
                tag: DB::get(r, 0)?,
                group_ref: <DB as Column<Uuid>>::get(r, 1)?,
                sealed: DB::get(r, 2)?,
                key_id: DB::get(r, 3)?,
            })
        };
        Ok(rows.iter().map(read).collect::<Result<_, _>>()?)
    }

    async fn retag_members(
        &mut self,
        key: &SealKey,
        moves: &[(Vec<u8>, GroupId, Uuid)],
    ) -> Result<(), StoreError> {
        for chunk in moves.chunks(CHUNK) {
            let mut q = Statement::new(
                "UPDATE memberships SET member_tag = v.column2, sealed_identity = v.column3, \
                 key_id = v.column4, group_ref = v.column5 FROM (",
            );
            q.values(chunk, |b, (old, group, identity)| {
                b.bind(old.clone());
                b.bind(key.member_tag(*group, *identity));
                b.bind(key.seal_member(*group, *identity));
                b.bind(key.id().to_string());
                b.bind(key.group_ref(*group));
            });
            q.push(") AS v WHERE memberships.member_tag = v.column1");
            self.run(q).await?;
        }
        Ok(())
    }

    async fn count_members(
        &mut self,
        group: GroupId,
        refs: &[Uuid],
    ) -> Result<Option<u64>, StoreError> {
        let mut q = Statement::new("SELECT (SELECT COUNT(*) FROM memberships WHERE ");
        q.in_list("group_ref", refs.iter().copied());
        q.push(") FROM distribution_groups WHERE group_id = ");
        q.bind(*group.as_uuid());
        let counts: Vec<i64> = self.column(q).await?;
        Ok(counts
            .first()
            .map(|n| u64::try_from(*n).unwrap_or_default()))
    }

    async fn all_groups(&mut self) -> Result<Vec<GroupId>, StoreError> {
        let ids: Vec<Uuid> = self
            .column(Statement::new("SELECT group_id FROM distribution_groups"))
            .await?;
        Ok(ids.into_iter().map(GroupId::from).collect())
    }

    async fn any_legacy_members(&mut self) -> Result<bool, StoreError> {
        let found: Vec<Vec<u8>> = self
            .column(Statement::new(
                "SELECT member_tag FROM memberships \
                 WHERE group_ref IN (SELECT group_id FROM distribution_groups) LIMIT 1",
            ))
            .await?;
        Ok(!found.is_empty())
    }

    async fn reference_legacy_members(
        &mut self,
        key: &SealKey,
        group: GroupId,
    ) -> Result<(), StoreError> {
        let mut q = Statement::new("UPDATE memberships SET group_ref = ");
        q.bind(key.group_ref(group));
        q.push(" WHERE group_ref = ");
        q.bind(*group.as_uuid());
        q.push(" AND key_id = ");
        q.bind(key.id().to_string());
        self.run(q).await
    }

    async fn count_snapshot(
        &mut self,
        group: GroupId,
    ) -> Result<Option<(CountBucket, i64)>, StoreError> {
        let mut q = Statement::new(
            "SELECT bucket, refresh_after_ms FROM count_snapshots WHERE group_id = ",
        );
        q.bind(*group.as_uuid());
        let rows = self.rows(q).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let bucket: i64 = DB::get(row, 0)?;
        let after: i64 = DB::get(row, 1)?;
        // A bucket this code did not write reads as stale: the next read replaces it.
        Ok(usize::try_from(bucket)
            .ok()
            .and_then(|i| BUCKETS.get(i))
            .map(|b| (*b, after)))
    }

    async fn save_count_snapshot(
        &mut self,
        group: GroupId,
        bucket: CountBucket,
        refresh_after_ms: i64,
    ) -> Result<(), StoreError> {
        let index = BUCKETS
            .iter()
            .position(|b| *b == bucket)
            .unwrap_or_default() as i64;
        let mut q =
            Statement::new("INSERT INTO count_snapshots (group_id, bucket, refresh_after_ms) ");
        q.values(
            [(*group.as_uuid(), index, refresh_after_ms)],
            |b, (g, i, at)| {
                b.bind(g);
                b.bind(i);
                b.bind(at);
            },
        );
        q.push(
            " ON CONFLICT (group_id) DO UPDATE SET bucket = excluded.bucket, \
             refresh_after_ms = excluded.refresh_after_ms",
        );
        self.run(q).await
    }
}

/// The buckets in the order `count_snapshots.bucket` numbers them.
const BUCKETS: [CountBucket; 5] = [
    CountBucket::Under10,
    CountBucket::From10To49,
    CountBucket::From50To249,
    CountBucket::From250To999,
    CountBucket::From1000,
];

#[async_trait]
impl<DB: SqlBackend> Revocations for Conn<'_, DB> {
    async fn revoke(&mut self, tag: Vec<u8>, not_before_ms: i64) -> Result<(), StoreError> {
        let mut q = Statement::new("INSERT INTO revocations (subject_tag, not_before_ms) ");
        q.values([(tag, not_before_ms)], |b, (tag, at)| {
            b.bind(tag);
            b.bind(at);
        });
        q.push(
            " ON CONFLICT (subject_tag) DO UPDATE SET not_before_ms = excluded.not_before_ms \
             WHERE excluded.not_before_ms > revocations.not_before_ms",
        );
        self.run(q).await
    }

    async fn revoked_before(&mut self, tags: &[Vec<u8>]) -> Result<Option<i64>, StoreError> {
        if tags.is_empty() {
            return Ok(None);
        }
        let mut q = Statement::new("SELECT not_before_ms FROM revocations WHERE ");
        q.in_list("subject_tag", tags.iter().cloned());
        Ok(self.column::<i64>(q).await?.into_iter().max())
    }
}

#[async_trait]
impl<DB: SqlBackend> Locks for Conn<'_, DB> {
    async fn lock_keys(&mut self, keys: &[i64], exclusive: bool) -> Result<bool, StoreError> {
        let Some((exclusive_fn, shared_fn)) = DB::KEY_LOCKS else {
            return Ok(false);
        };
        let function = if exclusive { exclusive_fn } else { shared_fn };
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        for chunk in keys.chunks(CHUNK) {
            // The VALUES list is read in order, so the locks are taken in key order.
            let mut q = Statement::new(format!("SELECT {function}(k) FROM ("));
            q.values(chunk, |b, k| {
                b.bind(*k);
            });
            q.push(") AS v(k)");
            self.run(q).await?;
        }
        Ok(true)
    }
}

#[async_trait]
impl<DB: SqlBackend> AuditLog for Conn<'_, DB> {
    async fn append(&mut self, context: &Context, events: &[NewEvent]) -> Result<(), StoreError> {
        Ok(DB::append(self.0, context, events).await?)
    }
}

#[async_trait]
impl<DB: SqlBackend> Tx for Conn<'_, DB> {
    async fn savepoint(&mut self, name: &str) -> Result<(), StoreError> {
        self.run(Statement::new(format!("SAVEPOINT {name}"))).await
    }

    async fn release_savepoint(&mut self, name: &str) -> Result<(), StoreError> {
        self.run(Statement::new(format!("RELEASE SAVEPOINT {name}")))
            .await
    }

    async fn rollback_to_savepoint(&mut self, name: &str) -> Result<(), StoreError> {
        self.run(Statement::new(format!("ROLLBACK TO SAVEPOINT {name}")))
            .await
    }
}

/// Every row of every table but the audit chain's, each column as text: text as it is, bytes
/// as lowercase hex, UUIDs as both their usual form and hex. For the tests that check what a
/// dump reveals.
#[cfg(test)]
pub(super) async fn dump<DB: SqlBackend>(pool: &sqlx::Pool<DB>) -> Vec<(String, Vec<Vec<String>>)> {
    use sqlx::Row as _;
    let mut conn = pool.acquire().await.expect("a connection");
    let mut conn = Conn::<DB>(&mut conn);
    let tables: Vec<String> = conn
        .column(Statement::new(DB::LIST_TABLES))
        .await
        .expect("list tables");
    let mut out = Vec::new();
    for table in tables {
        let rows = conn
            .rows(Statement::new(format!("SELECT * FROM {table}")))
            .await
            .expect("select *");
        let text = |row: &DB::Row, i: usize| -> String {
            if let Ok(v) = <DB as Column<Option<String>>>::get(row, i) {
                v.unwrap_or_default()
            } else if let Ok(v) = <DB as Column<Option<Vec<u8>>>>::get(row, i) {
                v.map(hex::encode).unwrap_or_default()
            } else if let Ok(v) = <DB as Column<Option<bool>>>::get(row, i) {
                v.map(|b| b.to_string()).unwrap_or_default()
            } else if let Ok(v) = <DB as Column<Option<i64>>>::get(row, i) {
                v.map(|n| n.to_string()).unwrap_or_default()
            } else if let Ok(v) = <DB as Column<Option<Uuid>>>::get(row, i) {
                v.map(|u| format!("{u} {}", hex::encode(u.as_bytes())))
                    .unwrap_or_default()
            } else {
                panic!("{table}: column {i} has a type the dump cannot show")
            }
        };
        let rows = rows
            .iter()
            .map(|row| (0..row.len()).map(|i| text(row, i)).collect())
            .collect();
        out.push((table, rows));
    }
    out
}
