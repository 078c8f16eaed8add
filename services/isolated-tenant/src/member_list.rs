//! The one reader of member lists: who is in a group, opened with the tenant's keys.
//!
//! A member list is the most sensitive thing the tenant can say, and INV-1 allows two readers
//! of it: mail expansion ([`recipients`], for [`crate::mail`]) and the break-glass export
//! ([`lawful_export`], for [`crate::breakglass`], INV-8). Both read through this module, and no
//! other code in the tenant opens a group's people from `memberships` (the main store opens a
//! group's identity ids only to end the memberships a stricter label bars, and re-sealing walks
//! every row by tag; neither answers who is in a group). The
//! members-only sender check ([`is_mail_member`]) asks about one person, and lives here so
//! that the mail side has one rule about who counts.
//!
//! # Disabled identities
//!
//! `identities.disabled` has been in the schema since the first migration: an identity that
//! is suspended (its person's account is disabled at the company's IdP, or an operator set it
//! by hand) but not offboarded. No code path sets it today; offboarding deletes the identity
//! and its membership rows outright. A disabled identity therefore keeps its memberships, and
//! enabling it again restores them. The rule, the same for every reader:
//!
//! - **Mail fails closed.** A disabled identity receives no copy of a group's mail and does not
//!   count as a member for the `members` sender policy: a suspended account should not go on
//!   receiving, or posting to, a confidential group ([`takes_part_in_mail`]).
//! - **Break-glass tells the whole truth.** The export lists a disabled identity like any
//!   other member, marked `disabled`, and a member check about it answers "member": a lawful
//!   answer about who holds a membership must not leave someone out because their account is
//!   suspended, and the officer sees why they get no mail.
//!
//! Before this module the two readers disagreed: mail skipped disabled identities, break-glass
//! listed them unmarked, and the sender check counted them.

use crate::seal::{Profile, SealKeys};
use crate::sql::{Exec, Sql};
use crate::store::StoreError;
use domain::{Email, GroupId};
use uuid::Uuid;

/// Identity rows read per statement.
const CHUNK: usize = 500;

/// The membership rows of one group under one key, found by the group's reference under that
/// key; who each is about is sealed (INV-5).
const MEMBERSHIPS_OF_GROUP: &str =
    "SELECT sealed_identity, key_id FROM memberships WHERE group_ref = $1";

/// The identities of a list of ids (the caller appends the list).
const IDENTITIES_BY_ID: &str =
    "SELECT id, sealed_profile, key_id, disabled FROM identities WHERE id IN (";

/// One member, opened.
pub struct Member {
    /// Who it is: subject, address, kind.
    pub profile: Profile,
    /// Whether the identity is disabled (see the module docs).
    pub disabled: bool,
}

impl Member {
    /// Whether this member receives the group's mail ([`takes_part_in_mail`]).
    pub fn takes_part_in_mail(&self) -> bool {
        takes_part_in_mail(self.disabled)
    }
}

/// The rule for mail: a disabled identity neither receives a group's mail nor sends to a
/// members-only group as a member.
pub fn takes_part_in_mail(disabled: bool) -> bool {
    !disabled
}

/// The addresses mail expansion delivers `group`'s mail to: every member that takes part in
/// mail and has an address.
pub async fn recipients<'a>(
    on: impl Into<Exec<'a>>,
    keys: &SealKeys,
    group: GroupId,
) -> Result<Vec<Email>, StoreError> {
    Ok(read(on, keys, group)
        .await?
        .into_iter()
        .filter(Member::takes_part_in_mail)
        .filter_map(|m| m.profile.email)
        .collect())
}

/// The break-glass export: every member of `group`, disabled ones included and marked, in a
/// stable order (by identity id).
pub async fn lawful_export<'a>(
    on: impl Into<Exec<'a>>,
    keys: &SealKeys,
    group: GroupId,
) -> Result<Vec<Member>, StoreError> {
    read(on, keys, group).await
}

/// Whether the identity holding `email` is a member of `group` for the `members` sender
/// policy: found by the keyed tags of the address and of the membership, under every key;
/// a disabled identity is not.
pub async fn is_mail_member<'a>(
    on: impl Into<Exec<'a>>,
    keys: &SealKeys,
    group: GroupId,
    email: &Email,
) -> Result<bool, StoreError> {
    let mut on = on.into();
    let ids: Vec<(Uuid, bool)> =
        Sql::new("SELECT id, disabled FROM identities WHERE email_tag IN (")
            .push_list(keys.all().iter().map(|k| k.email_tag(email)))
            .push(")")
            .fetch_all(&mut on)
            .await?;
    for (id, disabled) in ids {
        let (n,): (i64,) = Sql::new("SELECT COUNT(*) FROM memberships WHERE member_tag IN (")
            .push_list(keys.all().iter().map(|k| k.member_tag(group, id)))
            .push(")")
            .fetch_one(&mut on)
            .await?;
        if n > 0 && takes_part_in_mail(disabled) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Every member of `group`, opened, ordered by identity id.
async fn read<'a>(
    on: impl Into<Exec<'a>>,
    keys: &SealKeys,
    group: GroupId,
) -> Result<Vec<Member>, StoreError> {
    let mut on = on.into();
    let mut sealed: Vec<(Vec<u8>, String)> = Vec::new();
    for group_ref in keys.group_refs(group) {
        sealed.extend(
            Sql::new(MEMBERSHIPS_OF_GROUP)
                .bind(group_ref)
                .fetch_all::<(Vec<u8>, String)>(&mut on)
                .await?,
        );
    }
    let mut ids = sealed
        .iter()
        .map(|(s, kid)| Ok(keys.get(kid)?.open_member(group, s)?))
        .collect::<Result<Vec<Uuid>, StoreError>>()?;
    // A membership re-sealed under a new key may briefly have two rows.
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<(Uuid, Vec<u8>, String, bool)> = Sql::new(IDENTITIES_BY_ID)
            .push_list(chunk.iter().copied())
            .push(") ORDER BY id")
            .fetch_all(&mut on)
            .await?;
        for (id, profile, kid, disabled) in rows {
            out.push(Member {
                profile: keys.get(&kid)?.open_profile(id, &profile)?,
                disabled,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! The rule, proved through both of its callers on both backends.

    use super::*;
    use crate::audit::Context;
    use crate::breakglass::store::{Requests as _, SqlRequests};
    use domain::{GroupName, Subject};
    use service_kit::testing::TestDatabase;
    use std::sync::Arc;
    use std::time::Duration;
    use tenant_api::breakglass::{NewRequest, Scope};
    use tenant_api::{ApplyBatch, ProvisionGroup};

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    /// Three members of one group, the second of them disabled: mail leaves the disabled one
    /// out (no copy, no member for the `members` policy); break-glass lists all three, the
    /// disabled one marked, and a member check about it answers "member".
    async fn mail_and_break_glass_obey_one_rule_for_disabled_identities(database: TestDatabase) {
        // Arrange
        let keys = Arc::new(SealKeys::parse(&SealKeys::generate_text()).unwrap());
        let store = crate::store::connect(
            database.url(),
            2,
            keys.clone(),
            "corp.example".parse().unwrap(),
        )
        .await
        .unwrap();
        let group = GroupId::new();
        store
            .provision_group(
                &Context::tenant(),
                &ProvisionGroup {
                    group_id: group,
                    address: email("erg@groups.example"),
                    display_name: GroupName::parse("ERG").unwrap(),
                    sender_policy: None,
                    anonymous_posting: false,
                    owners: vec![],
                    label: None,
                    group_type: domain::GroupType::Mail,
                },
            )
            .await
            .unwrap();
        let label = domain::Label::defaults()
            .into_iter()
            .find(|l| l.name.as_str() == "General")
            .unwrap();
        let people = [
            email("ada@corp.example"),
            email("bo@corp.example"),
            email("cy@corp.example"),
        ];
        store
            .apply_batch(
                &Context::tenant(),
                &ApplyBatch::add_all(group, label, &people),
            )
            .await
            .unwrap();
        let pool = crate::sql::Pool::connect(database.url(), 2).await.unwrap();
        let mut tx = pool.begin_write().await.unwrap();
        let disabled = Sql::new("UPDATE identities SET disabled = $1 WHERE email_tag = $2")
            .bind(true)
            .bind(keys.active().email_tag(&people[1]))
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(disabled, 1);

        // Act and assert: mail.
        let mail = crate::mail::store::connect(database.url(), keys.clone())
            .await
            .unwrap();
        let accepted = mail
            .accept(group, b"Subject: hi\r\n\r\nhi\r\n", 100)
            .await
            .unwrap();
        assert_eq!(accepted.recipients, 2, "the disabled member gets no copy");
        assert!(mail.is_member_by_email(group, &people[0]).await.unwrap());
        assert!(
            !mail.is_member_by_email(group, &people[1]).await.unwrap(),
            "the disabled member does not send as a member"
        );

        // Act and assert: break-glass.
        let requests = SqlRequests::new(pool.clone(), keys.clone());
        let ask = |scope, email: Option<Email>| NewRequest {
            group_id: group,
            scope,
            subject: None,
            email,
            justification: "court order 2026-117, case 9".into(),
            recipient: None,
        };
        let auditor = Subject::parse("auditor-1").unwrap();
        let granted = |r: NewRequest| {
            let (requests, auditor) = (&requests, &auditor);
            async move {
                let day = Duration::from_secs(86_400);
                let filed = requests
                    .file(&Context::tenant(), &r, auditor, None, day)
                    .await
                    .unwrap();
                for officer in ["officer-1", "officer-2"] {
                    let officer = Subject::parse(officer).unwrap();
                    requests
                        .approve(&Context::tenant(), filed.id, &officer, true, day)
                        .await
                        .unwrap();
                }
                requests
                    .redeem(&Context::tenant(), filed.id, auditor, true)
                    .await
                    .unwrap()
            }
        };
        let listed = granted(ask(Scope::FullList, None)).await.members.unwrap();
        let mut seen: Vec<(String, bool)> = listed
            .iter()
            .map(|m| (m.email.clone().unwrap(), m.disabled))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                ("ada@corp.example".to_string(), false),
                ("bo@corp.example".to_string(), true),
                ("cy@corp.example".to_string(), false),
            ]
        );
        let check = granted(ask(Scope::MemberCheck, Some(people[1].clone()))).await;
        assert_eq!(
            check.member,
            Some(true),
            "a disabled identity is still a member"
        );

        drop((store, mail, requests, pool));
        database.remove().await;
    }

    #[tokio::test]
    async fn mail_and_break_glass_obey_one_rule_for_disabled_identities_on_sqlite() {
        mail_and_break_glass_obey_one_rule_for_disabled_identities(TestDatabase::sqlite()).await;
    }

    #[tokio::test]
    #[ignore = "needs HUSH_TEST_POSTGRES_URL"]
    async fn mail_and_break_glass_obey_one_rule_for_disabled_identities_on_postgres() {
        mail_and_break_glass_obey_one_rule_for_disabled_identities(TestDatabase::postgres().await)
            .await;
    }
}
