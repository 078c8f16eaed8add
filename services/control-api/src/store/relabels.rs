//! Re-labelling a group: the statements, each on the caller's transaction. The rule is plain:
//! a label as strict as the group's or stricter applies at once; a looser one waits for a
//! label-admin's approval (see [`super::super::Store::relabel_group`]).

use super::sql::open_subject;
use super::{corrupt, label_detail, PendingRelabel, StoreError};
use crate::catalog_audit::CatalogEvent;
use crate::seal::OwnerKey;
use domain::{GroupId, GroupName, GroupState, JoinPolicy, Label, LabelName, LabelPolicy, Subject};
use service_kit::sql::Dialect;
use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use std::marker::PhantomData;
use uuid::Uuid;

/// The columns of [`RelabelRow`].
pub(super) const RELABEL_SELECT: &str = "SELECT r.id, r.group_id, g.name, r.from_label, \
     r.to_label, l.description, r.to_policy, r.proposed_by, r.proposed_at \
     FROM group_relabels r JOIN groups g ON g.id = r.group_id JOIN labels l ON l.name = r.to_label";

/// A pending re-labelling's row: id, group, group name, from, to, to's description, to's policy
/// (JSON, when proposed), proposer, when.
pub(super) type RelabelRow = (
    Uuid,
    Uuid,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
);

pub(super) fn relabel_from(key: &OwnerKey, row: RelabelRow) -> Result<PendingRelabel, StoreError> {
    let (id, group, group_name, from, to, description, policy, proposed_by, proposed_at) = row;
    Ok(PendingRelabel {
        id,
        group: GroupId::from(group),
        group_name: GroupName::parse(group_name).map_err(corrupt)?,
        from: LabelName::parse(from).map_err(corrupt)?,
        to: Label {
            name: LabelName::parse(to).map_err(corrupt)?,
            description,
            policy: serde_json::from_str(&policy).map_err(corrupt)?,
        },
        proposed_by: open_subject(key, &proposed_by)?,
        proposed_at,
    })
}

/// The group a re-labelling is about, locked until the transaction ends.
pub(super) struct HeldGroup {
    pub state: GroupState,
    pub label: LabelName,
    pub join_policy: JoinPolicy,
    pub name: GroupName,
}

/// A pending re-labelling as its approval reads it.
pub(super) struct Held {
    pub group: GroupId,
    pub from: LabelName,
    pub to: LabelName,
    pub to_policy: LabelPolicy,
    pub proposed_by: Subject,
}

/// The audit event of a re-labelling from `from` to `to`.
pub(super) fn event(
    action: &'static str,
    group: GroupId,
    from: &LabelName,
    to: &Label,
    change: Option<Uuid>,
) -> CatalogEvent {
    let mut detail = serde_json::json!({
        "from": from.as_str(),
        "to": to.name.as_str(),
        "to_policy": label_detail(to),
    });
    if let Some(id) = change {
        detail["change"] = id.to_string().into();
    }
    CatalogEvent::group(action, group, detail)
}

pub(super) struct Relabels<DB>(PhantomData<DB>);

impl<DB: Dialect> Relabels<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'r> (Uuid,): FromRow<'r, DB::Row>,
    for<'r> (String, String, String, String): FromRow<'r, DB::Row>,
    for<'r> (Uuid, String, String, String, String): FromRow<'r, DB::Row>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    /// The group, locked (Postgres: `FOR UPDATE`).
    pub async fn hold_group(
        conn: &mut DB::Connection,
        id: GroupId,
    ) -> Result<Option<HeldGroup>, StoreError> {
        let sql = format!(
            "SELECT state, label, join_policy, name FROM groups WHERE id = $1{}",
            DB::FOR_UPDATE
        );
        let row: Option<(String, String, String, String)> = sqlx::query_as(&sql)
            .bind(*id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|(state, label, join_policy, name)| {
            Ok(HeldGroup {
                state: GroupState::parse(&state).map_err(corrupt)?,
                label: LabelName::parse(label).map_err(corrupt)?,
                join_policy: JoinPolicy::parse(&join_policy).map_err(corrupt)?,
                name: GroupName::parse(name).map_err(corrupt)?,
            })
        })
        .transpose()
    }

    /// The id of the re-labelling of `group` waiting for approval, if any.
    pub async fn pending_id(
        conn: &mut DB::Connection,
        group: GroupId,
    ) -> Result<Option<Uuid>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM group_relabels WHERE group_id = $1")
                .bind(*group.as_uuid())
                .fetch_optional(&mut *conn)
                .await?,
        )
    }

    /// The pending re-labelling `id`, locked (Postgres: `FOR UPDATE`): its group, the label
    /// it leaves and the label it proposes with that label's policy when proposed, and its
    /// proposer.
    pub async fn hold(
        key: &OwnerKey,
        conn: &mut DB::Connection,
        id: Uuid,
    ) -> Result<Option<Held>, StoreError> {
        let sql = format!(
            "SELECT group_id, from_label, to_label, to_policy, proposed_by FROM group_relabels \
             WHERE id = $1{}",
            DB::FOR_UPDATE
        );
        let row: Option<(Uuid, String, String, String, String)> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|(group, from, to, policy, proposed_by)| {
            Ok(Held {
                group: GroupId::from(group),
                from: LabelName::parse(from).map_err(corrupt)?,
                to: LabelName::parse(to).map_err(corrupt)?,
                to_policy: serde_json::from_str(&policy).map_err(corrupt)?,
                proposed_by: open_subject(key, &proposed_by)?,
            })
        })
        .transpose()
    }

    /// Files `change` for approval.
    pub async fn file(
        key: &OwnerKey,
        conn: &mut DB::Connection,
        change: &PendingRelabel,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO group_relabels (id, group_id, from_label, to_label, to_policy, \
             proposed_by, proposed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(change.id)
        .bind(*change.group.as_uuid())
        .bind(change.from.as_str())
        .bind(change.to.name.as_str())
        .bind(serde_json::to_string(&change.to.policy).map_err(corrupt)?)
        .bind(key.subject(&change.proposed_by))
        .bind(change.proposed_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Removes the pending re-labelling `id`; answers whether there was one.
    pub async fn drop_change(conn: &mut DB::Connection, id: Uuid) -> Result<bool, StoreError> {
        let gone: Option<Uuid> =
            sqlx::query_scalar("DELETE FROM group_relabels WHERE id = $1 RETURNING id")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        Ok(gone.is_some())
    }

    /// Writes the group's new label.
    pub async fn write(
        conn: &mut DB::Connection,
        group: GroupId,
        to: &LabelName,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE groups SET label = $1, updated_at = $2 WHERE id = $3")
            .bind(to.as_str())
            .bind(now)
            .bind(*group.as_uuid())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
