//! The tenant's rules: what each store operation reads, decides and writes, in order, inside
//! one transaction it is given ([`Tx`]). Each write follows the same steps: find the people
//! (locked), plan in memory ([`identity::plan_add`], [`batch_plan`]), let the label decide
//! (`domain::may_enter`) before anything is written, write, and append the audit events as the
//! transaction's last statements.
//!
//! Nothing here knows which database it runs on, how transactions begin or end, or when an
//! operation is tried again: that is [`super::sql_store`]. The statements themselves are in
//! [`super::sql`].

use super::batch_plan;
use super::roles::{
    email_tags, identity_key, member_tags, subject_tags, IdentityRow, MemberRow, Opened, TagColumn,
    Tx,
};
use super::sql::CHUNK;
use super::{Provisioned, StoreError};
use crate::audit::{self, action, Context, NewEvent};
use crate::identity::{self, AddPlan, CorporateDomains, Known, Target, Unidentified};
use crate::seal::{Profile, SealKeys};
use domain::{CountBucket, Email, EntryRule, GroupId, IdentityKind, Subject};
use std::collections::{HashMap, HashSet};
use tenant_api::{
    AddMember, ApplyBatch, BatchOpKind, BatchOutcome, DistributionGroup, IdentityRef,
    ProvisionGroup,
};
use uuid::Uuid;

/// Plans of one batch transaction, each after finding that another batch made some of its new
/// people first; the last try's unique violation goes to the caller, which tries the whole
/// batch again.
const MADE_TRIES: u32 = 8;

/// What the rules need besides the database: the seal keys and the company's mail domains.
pub(super) struct Rules<'a> {
    pub keys: &'a SealKeys,
    pub corporate: &'a CorporateDomains,
}

/// The profile a write about someone the tenant has never seen seals and throws away, so that
/// path does the same cryptographic work as the others (INV-3).
fn stand_in_profile(who: &IdentityRef) -> Profile {
    Profile {
        subject: who.subject.clone(),
        email: who.email.clone(),
        kind: IdentityKind::Guest,
    }
}

/// The identities as [`identity`]'s pure functions see them.
fn known(found: &[Opened]) -> Vec<Known<'_>> {
    found
        .iter()
        .map(|o| Known {
            profile: &o.profile,
            email_owned: o.email_owned,
        })
        .collect()
}

impl Rules<'_> {
    /// Every identity whose subject tag or address tag, under any configured key, names
    /// `subject` or `email`, opened, in id order; when `lock`, each locked (exclusive, without
    /// touching its row: [`super::roles::Locks`]) and read again under the lock, until no
    /// identity found is unlocked. Usually one row, two when an address and a subject name
    /// different identities.
    async fn find_identities(
        &self,
        tx: &mut dyn Tx,
        subject: Option<&Subject>,
        email: Option<&Email>,
        lock: bool,
    ) -> Result<Vec<Opened>, StoreError> {
        if subject.is_none() && email.is_none() {
            return Err(Unidentified.into());
        }
        let by_subject = subject.map(|s| subject_tags(self.keys, s));
        let by_email = email.map(|e| email_tags(self.keys, e));
        let (by_subject, by_email) = (by_subject.unwrap_or_default(), by_email.unwrap_or_default());
        let mut rows = tx
            .find_identities(by_subject.clone(), by_email.clone())
            .await?;
        let mut locked: HashSet<i64> = HashSet::new();
        if lock {
            loop {
                let mut keys: Vec<i64> = rows
                    .iter()
                    .map(|r| identity_key(r.id))
                    .filter(|k| !locked.contains(k))
                    .collect();
                // Someone the tenant has never seen: a stand-in's key is locked and the lookup
                // runs again all the same, so that path runs the same statements (INV-3).
                if locked.is_empty() && keys.is_empty() {
                    keys.push(identity_key(Uuid::new_v4()));
                }
                // Nothing new to lock, or a backend whose write transaction holds everything.
                if keys.is_empty() || !tx.lock_keys(&keys, true).await? {
                    break;
                }
                locked.extend(keys);
                // What was read before the lock may have changed (an offboarding, a merge): read
                // again, now that no other writer can change these identities.
                rows = tx
                    .find_identities(by_subject.clone(), by_email.clone())
                    .await?;
            }
        }
        rows.iter().map(|r| r.open(self.keys)).collect()
    }

    /// The identities of the person signed in as `subject` with the address `email`
    /// ([`identity::own`]), opened; not locked.
    async fn own_identities(
        &self,
        tx: &mut dyn Tx,
        subject: &Subject,
        email: Option<&Email>,
    ) -> Result<Vec<Opened>, StoreError> {
        let found = self
            .find_identities(tx, Some(subject), email, false)
            .await?;
        let (by_subject, by_email) = identity::own(subject, email, &known(&found));
        Ok([by_subject, by_email]
            .into_iter()
            .flatten()
            .map(|i| found[i].clone())
            .collect())
    }

    /// The groups identity `id` is in: every group's membership tag for it, under every key,
    /// looked up. There is no per-person list of groups (so no membership write touches a
    /// per-person row, issue 16); this probe costs one keyed hash per group and key and one
    /// index lookup per [`CHUNK`] tags. Sorted, each once.
    async fn groups_of_identity(
        &self,
        tx: &mut dyn Tx,
        id: Uuid,
        among: Option<&[GroupId]>,
    ) -> Result<Vec<GroupId>, StoreError> {
        let groups = match among {
            Some(named) => tx.existing_groups(named).await?,
            None => tx.all_groups().await?,
        };
        let mut by_tag: HashMap<Vec<u8>, GroupId> =
            HashMap::with_capacity(groups.len() * self.keys.all().len());
        for g in groups {
            for tag in member_tags(self.keys.all(), g, id) {
                by_tag.insert(tag, g);
            }
        }
        let tags: Vec<Vec<u8>> = by_tag.keys().cloned().collect();
        let mut found: Vec<GroupId> = tx
            .present_tags(&tags)
            .await?
            .iter()
            .filter_map(|t| by_tag.get(t).copied())
            .collect();
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// Creates the group, or confirms it when it exists with the same address (taking the new
    /// display name).
    pub(super) async fn provision(
        &self,
        context: &Context,
        tx: &mut dyn Tx,
        request: &ProvisionGroup,
    ) -> Result<Provisioned, StoreError> {
        let group = request.group_id;
        let created = tx.create_group(request).await?;
        if created {
            tx.append(
                context,
                &[NewEvent::new(action::GROUP_PROVISIONED, Some(group))],
            )
            .await?;
        } else {
            if let Some(rule) = &request.label {
                // Locks the group first, as every writer that changes it does.
                self.apply_rule(context, tx, group, rule).await?;
            }
            let (address, display_name) = tx.group_for_update(group).await?;
            if address != request.address.as_str() {
                return Err(StoreError::AddressMismatch);
            }
            if display_name != request.display_name.as_str() {
                tx.rename_group(group, request.display_name.as_str())
                    .await?;
                tx.append(
                    context,
                    &[NewEvent::new(action::GROUP_RENAMED, Some(group))],
                )
                .await?;
            }
        }
        Ok(Provisioned {
            group: DistributionGroup {
                group_id: group,
                address: request.address.clone(),
                display_name: request.display_name.clone(),
            },
            created,
        })
    }

    /// The identity ids of the group's members, opened, sorted and each once (so their locks
    /// are taken in id order, as every writer takes them). The tenant's own reading of a
    /// member list, for deprovisioning and for ending the memberships a rule bars; it never
    /// leaves the tenant.
    async fn member_ids(&self, tx: &mut dyn Tx, group: GroupId) -> Result<Vec<Uuid>, StoreError> {
        let mut ids = tx
            .sealed_members(&self.keys.group_refs(group))
            .await?
            .iter()
            .map(|(s, kid)| Ok(self.keys.get(kid)?.open_member(group, s)?))
            .collect::<Result<Vec<Uuid>, StoreError>>()?;
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Removes the group and its membership rows.
    pub(super) async fn deprovision(
        &self,
        context: &Context,
        tx: &mut dyn Tx,
        group: GroupId,
    ) -> Result<(), StoreError> {
        // Exclusive: adds and removes in flight finish first, later ones find no group.
        if !tx.lock_group(group).await? {
            return Ok(());
        }
        tx.delete_group_members(&self.keys.group_refs(group))
            .await?;
        tx.delete_group(group).await?;
        tx.append(
            context,
            &[NewEvent::new(action::GROUP_DEPROVISIONED, Some(group))],
        )
        .await?;
        Ok(())
    }

    /// Makes `request.member` a member of `group` ([`super::Store::add_member`]).
    pub(super) async fn add(
        &self,
        context: &Context,
        tx: &mut dyn Tx,
        group: GroupId,
        request: &AddMember,
    ) -> Result<(), StoreError> {
        let member = &request.member;
        if member.subject.is_none() && member.email.is_none() {
            return Err(Unidentified.into());
        }
        tx.hold_group(group).await?;
        // The rule the tenant keeps for the group binds too: the label the caller sends may be
        // older than a tightening control-api has since pushed here (a lookup kept by
        // membership-api, a lookup made just before the change), and a label prevents.
        let kept = tx.group_rules(&[group]).await?.pop().and_then(|(_, r)| r);
        // A group provisioned before the tenant kept entry rules learns its label's here (an
        // update that matches no row once the rule is known).
        let rule = EntryRule::of(&request.label.name, &request.label.policy);
        tx.set_group_rule(group, &rule, true).await?;
        let events = self.add_in(tx, group, request, kept.as_ref()).await?;
        tx.append(context, &events).await
    }

    /// The add itself, inside a transaction that already holds the group and has checked that
    /// someone is named. Refuses (label) before writing anything, so a refusal leaves the
    /// transaction as it was. Answers the audit events of what it did.
    async fn add_in(
        &self,
        tx: &mut dyn Tx,
        group: GroupId,
        request: &AddMember,
        kept: Option<&EntryRule>,
    ) -> Result<Vec<NewEvent>, StoreError> {
        let member = &request.member;
        let active = self.keys.active();
        let mut events = Vec::new();

        // Preparation, all reads: who this is, what kind, and whether the label admits them.
        // Nothing is written unless it does.
        let found = self
            .find_identities(tx, member.subject.as_ref(), member.email.as_ref(), true)
            .await?;
        let AddPlan {
            target,
            profile,
            kind_known,
            email_owned,
            merge,
            strip,
        } = identity::plan_add(member, &known(&found), self.corporate)?;
        // Fail closed: someone whose kind nobody knows enters no group.
        if !kind_known {
            return Err(domain::EntryRefusal::KindUnknown(request.label.name.clone()).into());
        }
        domain::may_enter(profile.kind, &request.label.name, &request.label.policy)?;
        if let Some(kept) = kept {
            kept.check(profile.kind)?;
        }

        let id = match target {
            Target::Existing(i) => found[i].id,
            Target::Fresh => Uuid::new_v4(),
        };
        let pseudonym = audit::member(active, group, id);
        let actor = audit::self_or_service(member.kind.is_some());
        // The address moved to this person: its former holder keeps the rest.
        if let Some(b) = strip {
            let other = &found[b];
            let mut without = other.profile.clone();
            without.email = None;
            let row = IdentityRow::new(active, other.id, &without, false);
            tx.update_identities(vec![row]).await?;
            events.push(
                NewEvent::new(action::IDENTITY_ADDRESS_RELEASED, None)
                    .about(audit::identity_alone(active, other.id)),
            );
        }
        // The same person, added by address before: their memberships move here.
        if let Some(b) = merge {
            let other = &found[b];
            let moved = self.groups_of_identity(tx, other.id, None).await?;
            let mut stale = Vec::new();
            for g in &moved {
                stale.extend(member_tags(self.keys.all(), *g, other.id));
                stale.extend(member_tags(self.keys.retired(), *g, id));
            }
            tx.delete_members(&stale).await?;
            let pairs: Vec<(GroupId, Uuid)> = moved.iter().map(|g| (*g, id)).collect();
            tx.insert_members(active, &pairs).await?;
            tx.delete_identities(&[other.id]).await?;
            events.push(
                NewEvent::new(action::IDENTITY_BOUND, Some(group))
                    .about(pseudonym.clone())
                    .by(actor.clone()),
            );
        }

        // The person's token says another kind than the one stored (on their identity, or on
        // the one made from their address that merges into it): the memberships the new kind's
        // labels bar end now, in this transaction (this group's label admitted it).
        let kind_changed = match target {
            Target::Existing(i) => found[i].profile.kind != profile.kind,
            Target::Fresh => false,
        } || merge.is_some_and(|b| found[b].profile.kind != profile.kind);
        if kind_changed {
            events.push(
                NewEvent::new(action::IDENTITY_KIND_CHANGED, None)
                    .about(audit::identity_alone(active, id)),
            );
            events.extend(
                self.end_barred_memberships(tx, id, profile.kind, Some(group))
                    .await?,
            );
        }

        // From here the statements are the same whether or not the person is a member, or was
        // known (INV-3). A membership made under a retired key goes, and the row under the
        // active key is inserted, which does nothing when it is there.
        if !self.keys.retired().is_empty() {
            tx.delete_members(&member_tags(self.keys.retired(), group, id))
                .await?;
        }
        tx.insert_members(active, &[(group, id)]).await?;
        // The identity row is written only when what it says changed (a subject bound, a kind
        // corrected, an address taken or given up); otherwise the same insert runs for a known
        // person (matching their row, writing nothing) and for a stranger (creating theirs).
        // A membership write never rewrites a known person's row: that would tie their
        // memberships in different groups together in the database's log (issue 16).
        let row = IdentityRow::new(active, id, &profile, email_owned);
        let changed = match target {
            Target::Existing(i) => {
                found[i].profile != profile
                    || found[i].email_owned != email_owned
                    || found[i].key_id != active.id()
            }
            Target::Fresh => false,
        };
        if changed {
            tx.update_identities(vec![row]).await?;
        } else {
            tx.insert_identity_if_absent(row).await?;
        }
        events.push(
            NewEvent::new(action::MEMBERSHIP_ADDED, Some(group))
                .about(pseudonym)
                .by(actor),
        );
        Ok(events)
    }

    /// Makes sure `who` is not a member of `group` ([`super::Store::remove_member`]).
    pub(super) async fn remove(
        &self,
        context: &Context,
        tx: &mut dyn Tx,
        group: GroupId,
        who: &IdentityRef,
    ) -> Result<(), StoreError> {
        if who.subject.is_none() && who.email.is_none() {
            return Err(Unidentified.into());
        }
        tx.hold_group(group).await?;
        let found = self
            .find_identities(tx, who.subject.as_ref(), who.email.as_ref(), true)
            .await?;
        // One slot per candidate (two when a subject and an address are given: the person's
        // own identity and one made from their address). A candidate the tenant has never
        // seen is no member; the same statements still run, on an id that matches no row
        // (INV-3).
        let targets: Vec<Opened> =
            identity::removal_targets(who.subject.as_ref(), who.email.as_ref(), &known(&found))
                .into_iter()
                .map(|slot| match slot {
                    Some(i) => found[i].clone(),
                    None => Opened {
                        id: Uuid::new_v4(),
                        profile: stand_in_profile(who),
                        email_owned: false,
                        key_id: String::new(),
                    },
                })
                .collect();
        let tags: Vec<Vec<u8>> = targets
            .iter()
            .flat_map(|t| member_tags(self.keys.all(), group, t.id))
            .collect();
        tx.delete_members(&tags).await?;
        // One event, about the first candidate (a stand-in's pseudonym for someone the tenant
        // has never seen, INV-3).
        let events: Vec<NewEvent> = targets
            .first()
            .map(|first| {
                NewEvent::new(action::MEMBERSHIP_REMOVED, Some(group)).about(audit::member(
                    self.keys.active(),
                    group,
                    first.id,
                ))
            })
            .into_iter()
            .collect();
        // No identity row is written: a leave touches only the membership row (issue 16).
        tx.append(context, &events).await
    }

    /// Removes `who` from every group and deletes their identity ([`super::Store::offboard`]).
    pub(super) async fn offboard(
        &self,
        context: &Context,
        tx: &mut dyn Tx,
        who: &IdentityRef,
    ) -> Result<(), StoreError> {
        let found = self
            .find_identities(tx, who.subject.as_ref(), who.email.as_ref(), true)
            .await?;
        let targets =
            identity::offboard_targets(who.subject.as_ref(), who.email.as_ref(), &known(&found));
        // A stranger: the delete still runs, on an id that matches no row.
        let mut ids = vec![Uuid::new_v4()];
        let subject = targets.first().map_or(ids[0], |i| found[*i].id);
        let mut tags = Vec::new();
        for i in targets {
            let o = &found[i];
            ids.push(o.id);
            for g in self.groups_of_identity(tx, o.id, None).await? {
                tags.extend(member_tags(self.keys.all(), g, o.id));
            }
        }
        // Mail expands from membership rows: once these are gone, so is the mail.
        tx.delete_members(&tags).await?;
        tx.delete_identities(&ids).await?;
        // Offboarding bites: every token of theirs issued before now is void, in every
        // service. Recorded for the subject named (known to the tenant or not) and for the
        // subjects of the identities deleted.
        let now = service_kit::db::now_ms();
        let mut subjects: Vec<&Subject> = who.subject.iter().collect();
        for i in
            identity::offboard_targets(who.subject.as_ref(), who.email.as_ref(), &known(&found))
        {
            if let Some(s) = &found[i].profile.subject {
                subjects.push(s);
            }
        }
        subjects.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        subjects.dedup();
        for s in subjects {
            tx.revoke(self.keys.active().subject_tag(s), now).await?;
        }
        // One event, about no group, under an identity-only pseudonym (see crate::audit).
        let event = NewEvent::new(action::IDENTITY_OFFBOARDED, None)
            .about(audit::identity_alone(self.keys.active(), subject));
        tx.append(context, &[event]).await
    }

    /// A batch in one write transaction, in a handful of set-based statements whatever its
    /// size: the groups it names are held (shared, in id order), every identity it could be
    /// about is read and locked (in id order), the operations are planned in memory in order
    /// ([`batch_plan`]: label checks included), and the result is written as one delete, one
    /// insert and one upsert per [`CHUNK`] rows. A refusal (label, nobody named, unknown group)
    /// is counted and writes nothing for that operation; any database failure rolls the whole
    /// batch back, so a chunk is applied whole or not at all.
    pub(super) async fn apply_batch(
        &self,
        context: &Context,
        tx: &mut dyn Tx,
        batch: &ApplyBatch,
    ) -> Result<BatchOutcome, StoreError> {
        let mut named: Vec<GroupId> = batch.ops.iter().map(|o| o.group_id).collect();
        named.sort_unstable();
        named.dedup();
        let held = tx.hold_groups(&named).await?;
        let active = self.keys.active();
        // The people this batch makes are written first, in the order of their tags (the same
        // order in every batch, so two batches making the same people wait for each other
        // instead of deadlocking). When another batch made some of them meanwhile, the insert
        // waits for it to commit and then meets its tags: this batch undoes its own insert,
        // reads everyone again (now including them) and plans again, holding what it holds,
        // instead of starting over and racing the next batch.
        let mut people = self.batch_people(tx, batch, &held).await?;
        let mut tries = 1;
        let (plan, existing) = loop {
            let existing: HashSet<Uuid> = people.iter().map(|p| p.id).collect();
            let plan = batch_plan::plan(batch, &held, people, self.corporate);
            let mut made: Vec<IdentityRow> = plan
                .identities
                .iter()
                .filter(|p| !existing.contains(&p.id))
                .map(|p| IdentityRow::new(active, p.id, &p.profile, p.email_owned))
                .collect();
            made.sort_by(|a, b| {
                (&a.subject_tag, &a.email_tag, a.id).cmp(&(&b.subject_tag, &b.email_tag, b.id))
            });
            tx.savepoint("batch_made").await?;
            match tx.insert_identities(made).await {
                Ok(()) => {
                    tx.release_savepoint("batch_made").await?;
                    break (plan, existing);
                }
                Err(e) if e.is_unique_violation() && tries < MADE_TRIES => {
                    tx.rollback_to_savepoint("batch_made").await?;
                    tries += 1;
                    tracing::debug!(
                        tries,
                        "another batch made some of this batch's new people first; planning again"
                    );
                    people = self.batch_people(tx, batch, &held).await?;
                }
                Err(e) => return Err(e),
            }
        };

        let mut gone = Vec::new();
        let mut present = Vec::new();
        for (&(g, id), &holds) in &plan.memberships {
            if holds {
                // A membership made under a retired key goes; the active one stays.
                gone.extend(member_tags(self.keys.retired(), g, id));
                present.push((g, id));
            } else {
                gone.extend(member_tags(self.keys.all(), g, id));
            }
        }
        tx.delete_members(&gone).await?;
        // People made by this batch have no membership row yet, under any key.
        let (fresh, known_pairs): (Vec<_>, Vec<_>) = present
            .into_iter()
            .partition(|(_, id)| !existing.contains(id));
        tx.insert_members(active, &known_pairs).await?;
        let changed: Vec<IdentityRow> = plan
            .identities
            .iter()
            .filter(|p| existing.contains(&p.id))
            .map(|p| IdentityRow::new(active, p.id, &p.profile, p.email_owned))
            .collect();
        tx.update_identities(changed).await?;
        tx.insert_new_members(active, &fresh).await?;
        // Every event of the chunk, in one append, last in the transaction. A removal of
        // someone never seen is recorded under a stand-in's pseudonym, as the single call
        // records it (INV-3).
        let events: Vec<NewEvent> = plan
            .applied
            .iter()
            .map(|&(kind, g, id)| {
                let action = match kind {
                    BatchOpKind::Add => action::MEMBERSHIP_ADDED,
                    BatchOpKind::Remove => action::MEMBERSHIP_REMOVED,
                };
                let id = id.unwrap_or_else(Uuid::new_v4);
                NewEvent::new(action, Some(g)).about(audit::member(active, g, id))
            })
            .collect();
        tx.append(context, &events).await?;
        Ok(plan.outcome)
    }

    /// Every identity an operation of `batch` on a held group could be about (by the tags of
    /// its subject and address, under every key), opened and locked. Found first, then locked
    /// in id order in a second pass, so two batches sharing people take their locks in the
    /// same order.
    async fn batch_people(
        &self,
        tx: &mut dyn Tx,
        batch: &ApplyBatch,
        held: &HashSet<GroupId>,
    ) -> Result<Vec<batch_plan::Person>, StoreError> {
        let active = self.keys.active();
        let mut by_subject: HashSet<Vec<u8>> = HashSet::new();
        let mut by_email: HashSet<Vec<u8>> = HashSet::new();
        for op in batch.ops.iter().filter(|o| held.contains(&o.group_id)) {
            if let Some(s) = &op.subject {
                by_subject.extend(subject_tags(self.keys, s));
            }
            if let Some(e) = &op.email {
                by_email.extend(email_tags(self.keys, e));
            }
        }
        let mut ids: Vec<Uuid> = Vec::new();
        for (column, tags) in [
            (TagColumn::Subject, by_subject),
            (TagColumn::Email, by_email),
        ] {
            let tags: Vec<Vec<u8>> = tags.into_iter().collect();
            ids.extend(tx.identity_ids(column, &tags).await?);
        }
        ids.sort_unstable();
        ids.dedup();
        let keys: Vec<i64> = ids.iter().map(|id| identity_key(*id)).collect();
        tx.lock_keys(&keys, true).await?;
        let mut people = Vec::with_capacity(ids.len());
        for row in tx.identities_by_id(&ids).await? {
            let o = row.open(self.keys)?;
            people.push(batch_plan::Person {
                id: o.id,
                profile: o.profile,
                email_owned: o.email_owned,
                changed: o.key_id != active.id(),
            });
        }
        Ok(people)
    }

    /// Whether the person signed in as `subject` (with `email`) is a member of `group`
    /// ([`super::Store::is_member`]).
    /// Ends identity `id`'s memberships in those of its groups (but `spared`) whose kept entry
    /// rule does not admit `kind` (which just changed): their rows go. Answers an event per
    /// membership ended.
    async fn end_barred_memberships(
        &self,
        tx: &mut dyn Tx,
        id: Uuid,
        kind: IdentityKind,
        spared: Option<GroupId>,
    ) -> Result<Vec<NewEvent>, StoreError> {
        let mut groups = self.groups_of_identity(tx, id, None).await?;
        groups.retain(|g| Some(*g) != spared);
        let rules = tx.group_rules(&groups).await?;
        let barred: Vec<GroupId> = rules
            .into_iter()
            .filter(|(_, rule)| rule.as_ref().is_some_and(|r| !r.admits(kind)))
            .map(|(g, _)| g)
            .collect();
        if barred.is_empty() {
            return Ok(Vec::new());
        }
        let tags: Vec<Vec<u8>> = barred
            .iter()
            .flat_map(|g| member_tags(self.keys.all(), *g, id))
            .collect();
        tx.delete_members(&tags).await?;
        let active = self.keys.active();
        Ok(barred
            .iter()
            .map(|g| {
                NewEvent::new(action::MEMBERSHIP_ENDED_BY_LABEL, Some(*g))
                    .about(audit::member(active, *g, id))
            })
            .collect())
    }

    /// Ends every membership of `group` that `rule` does not admit; answers how many, and adds
    /// an event per membership ended to `events`. The caller holds the group exclusively.
    /// Reads the group's members as deprovisioning does, inside the tenant; only the count
    /// leaves it.
    async fn end_barred_in_group(
        &self,
        tx: &mut dyn Tx,
        group: GroupId,
        rule: &EntryRule,
        events: &mut Vec<NewEvent>,
    ) -> Result<u64, StoreError> {
        if rule.guests_allowed && rule.agents_allowed {
            return Ok(0);
        }
        let active = self.keys.active();
        let ids = self.member_ids(tx, group).await?;
        let mut ended = 0;
        for chunk in ids.chunks(CHUNK) {
            // Their kinds must not change under us (a kind settled meanwhile).
            let keys: Vec<i64> = chunk.iter().map(|id| identity_key(*id)).collect();
            tx.lock_keys(&keys, true).await?;
            let mut tags = Vec::new();
            for row in tx.identities_by_id(chunk).await? {
                let o = row.open(self.keys)?;
                if rule.admits(o.profile.kind) {
                    continue;
                }
                tags.extend(member_tags(self.keys.all(), group, o.id));
                events.push(
                    NewEvent::new(action::MEMBERSHIP_ENDED_BY_LABEL, Some(group))
                        .about(audit::member(active, group, o.id)),
                );
                ended += 1;
            }
            tx.delete_members(&tags).await?;
        }
        Ok(ended)
    }

    /// Keeps `rule` as `group`'s entry rule; when it bars a kind the rule kept before admitted
    /// (or none was kept), ends every membership it bars. Answers how many ended, or `None`
    /// when the tenant has no such group. Appends its events.
    pub(super) async fn apply_rule(
        &self,
        context: &Context,
        tx: &mut dyn Tx,
        group: GroupId,
        rule: &EntryRule,
    ) -> Result<Option<u64>, StoreError> {
        if !tx.lock_group(group).await? {
            return Ok(None);
        }
        let before = tx.group_rules(&[group]).await?.pop().and_then(|(_, r)| r);
        if before.as_ref() == Some(rule) {
            return Ok(Some(0));
        }
        tx.set_group_rule(group, rule, false).await?;
        let mut events = vec![NewEvent::new(action::GROUP_RULE_SET, Some(group))];
        let tightened = before.as_ref().is_none_or(|b| rule.bars_more_than(b));
        let ended = if tightened {
            self.end_barred_in_group(tx, group, rule, &mut events)
                .await?
        } else {
            0
        };
        tx.append(context, &events).await?;
        Ok(Some(ended))
    }

    /// Whether any of the identities of the person signed in as `subject` (with `email`) is
    /// stored with another kind than `kind`; a read, on any connection.
    pub(super) async fn kind_differs(
        &self,
        tx: &mut dyn Tx,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
    ) -> Result<bool, StoreError> {
        let own = self.own_identities(tx, subject, email).await?;
        Ok(own.iter().any(|o| o.profile.kind != kind))
    }

    /// Stores `kind` as the kind of the person signed in as `subject` (with `email`) — their
    /// token's or the directory's word — and ends every membership the new kind's labels bar
    /// ([`super::Store::settle_kind`]). Answers whether anything changed.
    pub(super) async fn settle_kind(
        &self,
        context: &Context,
        tx: &mut dyn Tx,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
    ) -> Result<bool, StoreError> {
        let active = self.keys.active();
        let found = self.find_identities(tx, Some(subject), email, true).await?;
        let (by_subject, by_email) = identity::own(subject, email, &known(&found));
        let mut events = Vec::new();
        for i in [by_subject, by_email].into_iter().flatten() {
            let mut o = found[i].clone();
            if o.profile.kind == kind {
                continue;
            }
            o.profile.kind = kind;
            events.push(
                NewEvent::new(action::IDENTITY_KIND_CHANGED, None)
                    .about(audit::identity_alone(active, o.id)),
            );
            events.extend(self.end_barred_memberships(tx, o.id, kind, None).await?);
            let row = IdentityRow::new(active, o.id, &o.profile, o.email_owned);
            tx.update_identities(vec![row]).await?;
        }
        let changed = !events.is_empty();
        tx.append(context, &events).await?;
        Ok(changed)
    }

    /// Makes sure the person the directory provisions has an identity of the directory's kind
    /// ([`super::Store::sync_identity`]): a kind that differs is corrected (ending what it
    /// bars, as [`Self::settle_kind`]); someone the tenant has not seen gets an identity in no
    /// group, holding their address unless another identity does.
    pub(super) async fn sync_identity(
        &self,
        context: &Context,
        tx: &mut dyn Tx,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
    ) -> Result<(), StoreError> {
        let found = self.find_identities(tx, Some(subject), email, true).await?;
        let (by_subject, by_email) = identity::own(subject, email, &known(&found));
        if by_subject.is_some() || by_email.is_some() {
            self.settle_kind(context, tx, subject, email, kind).await?;
            return Ok(());
        }
        let active = self.keys.active();
        let email_owned = match email {
            Some(e) => tx
                .taken_email_tags(&email_tags(self.keys, e))
                .await?
                .is_empty(),
            None => false,
        };
        let profile = Profile {
            subject: Some(subject.clone()),
            email: email.cloned(),
            kind,
        };
        let id = Uuid::new_v4();
        tx.insert_identities(vec![IdentityRow::new(active, id, &profile, email_owned)])
            .await?;
        let event =
            NewEvent::new(action::IDENTITY_SYNCED, None).about(audit::identity_alone(active, id));
        tx.append(context, &[event]).await
    }

    /// Whether tokens of `subject` issued at `issued_at` (seconds) were voided by an
    /// offboarding since ([`super::Store::token_revoked`]). A token without an issue time is
    /// void once the subject was ever offboarded.
    pub(super) async fn token_revoked(
        &self,
        tx: &mut dyn Tx,
        subject: &Subject,
        issued_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let since = tx.revoked_before(&subject_tags(self.keys, subject)).await?;
        Ok(match (since, issued_at) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(not_before_ms), Some(iat)) => iat.saturating_mul(1000) < not_before_ms,
        })
    }

    /// The group's snapshot bucket, while `now_ms` is before its refresh moment.
    pub(super) async fn fresh_count(
        &self,
        tx: &mut dyn Tx,
        group: GroupId,
        now_ms: i64,
    ) -> Result<Option<CountBucket>, StoreError> {
        Ok(tx
            .count_snapshot(group)
            .await?
            .filter(|(_, refresh_after_ms)| now_ms < *refresh_after_ms)
            .map(|(bucket, _)| bucket))
    }

    /// The bucket an owner is shown for the group ([`super::Store::shown_count`]): the
    /// group's snapshot while it is fresh ([`Self::fresh_count`]); otherwise the live count's
    /// bucket, kept as the new snapshot until `next_refresh_ms`.
    pub(super) async fn shown_count(
        &self,
        tx: &mut dyn Tx,
        group: GroupId,
        now_ms: i64,
        next_refresh_ms: i64,
    ) -> Result<CountBucket, StoreError> {
        if let Some(bucket) = self.fresh_count(tx, group, now_ms).await? {
            return Ok(bucket);
        }
        let live = tx
            .count_members(group, &self.keys.group_refs(group))
            .await?
            .ok_or(StoreError::GroupNotFound)?;
        let bucket = CountBucket::of(live);
        tx.save_count_snapshot(group, bucket, next_refresh_ms)
            .await?;
        Ok(bucket)
    }

    pub(super) async fn is_member(
        &self,
        tx: &mut dyn Tx,
        group: GroupId,
        subject: &Subject,
        email: Option<&Email>,
    ) -> Result<bool, StoreError> {
        if tx.existing_groups(&[group]).await?.is_empty() {
            return Err(StoreError::GroupNotFound);
        }
        let own = self.own_identities(tx, subject, email).await?;
        if own.is_empty() {
            return Ok(false);
        }
        let tags: Vec<Vec<u8>> = own
            .iter()
            .flat_map(|o| member_tags(self.keys.all(), group, o.id))
            .collect();
        tx.any_member(&tags).await
    }

    /// The groups the person signed in as `subject` (with `email`) is in
    /// ([`super::Store::groups_of`]).
    pub(super) async fn groups_of(
        &self,
        tx: &mut dyn Tx,
        subject: &Subject,
        email: Option<&Email>,
        among: Option<&[GroupId]>,
    ) -> Result<Vec<GroupId>, StoreError> {
        let own = self.own_identities(tx, subject, email).await?;
        let mut groups = Vec::new();
        for o in &own {
            groups.extend(self.groups_of_identity(tx, o.id, among).await?);
        }
        groups.sort_unstable();
        groups.dedup();
        Ok(groups)
    }

    /// Re-seals the identities after `after` in id order, at most `batch` of them. Answers how
    /// many it rewrote and where the next step starts (`None`: that was the last).
    pub(super) async fn reseal_identities(
        &self,
        context: &Context,
        tx: &mut dyn Tx,
        after: Uuid,
        batch: usize,
    ) -> Result<(u64, Option<Uuid>), StoreError> {
        let active = self.keys.active();
        let rows = tx.identities_after(after, batch).await?;
        let next = (rows.len() >= batch)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        let opened = rows
            .iter()
            .map(|r| r.open(self.keys))
            .collect::<Result<Vec<Opened>, StoreError>>()?;

        // Rows written before addresses were tagged get the tag of their address, unless
        // another identity holds it (under any key) or one earlier in this batch takes it.
        let candidates: Vec<Vec<u8>> = opened
            .iter()
            .filter(|o| !o.email_owned)
            .filter_map(|o| o.profile.email.as_ref())
            .flat_map(|e| email_tags(self.keys, e))
            .collect();
        let mut taken: HashSet<Vec<u8>> = tx
            .taken_email_tags(&candidates)
            .await?
            .into_iter()
            .collect();

        let mut writes = Vec::new();
        for (row, o) in rows.iter().zip(&opened) {
            let mut owned = o.email_owned;
            if let (false, Some(e)) = (owned, o.profile.email.as_ref()) {
                let tags = email_tags(self.keys, e);
                if tags.iter().all(|t| !taken.contains(t)) {
                    owned = true;
                    taken.extend(tags);
                }
            }
            let write = IdentityRow::new(active, o.id, &o.profile, owned);
            if !write.matches_tags_of(row) {
                writes.push(write);
            }
        }
        let rewritten = writes.len() as u64;
        tx.update_identities(writes).await?;
        if rewritten > 0 {
            tx.append(
                context,
                &[NewEvent::new(action::KEY_ROTATION_RESEALED, None)],
            )
            .await?;
        }
        Ok((rewritten, next))
    }

    /// Re-seals the membership rows after `after` in tag order, at most `batch` of them; as
    /// [`Self::reseal_identities`].
    pub(super) async fn reseal_memberships(
        &self,
        context: &Context,
        tx: &mut dyn Tx,
        after: &[u8],
        batch: usize,
    ) -> Result<(u64, Option<Vec<u8>>), StoreError> {
        let active = self.keys.active();
        let rows = tx.memberships_after(after, batch).await?;
        let next = (rows.len() >= batch)
            .then(|| rows.last().map(|r| r.tag.clone()))
            .flatten();
        // Every writer writes a membership's tag, reference, seal and key id together, so a row
        // under the active key is entirely under it.
        let stale: Vec<MemberRow> = rows
            .into_iter()
            .filter(|r| r.key_id != active.id())
            .collect();
        if stale.is_empty() {
            return Ok((0, next));
        }
        // Which group each row is about: the row says only its reference, under its own key.
        // Every group's reference under every key, computed once for the batch.
        let mut groups = HashMap::new();
        for group in tx.all_groups().await? {
            for key in self.keys.all() {
                groups.insert((key.id().to_string(), key.group_ref(group)), group);
            }
        }
        let mut moves = Vec::new();
        for row in stale {
            let key = self.keys.get(&row.key_id)?;
            let Some(group) = groups.get(&(row.key_id.clone(), row.group_ref)).copied() else {
                return Err(StoreError::Db(sqlx::Error::Decode(
                    "a membership row refers to no group the tenant has".into(),
                )));
            };
            let identity = key.open_member(group, &row.sealed)?;
            moves.push((row.tag, group, identity));
        }
        if moves.is_empty() {
            return Ok((0, next));
        }
        // A row under the active key for the same membership may have been written meanwhile:
        // then the old row simply goes.
        let new_tags: Vec<Vec<u8>> = moves
            .iter()
            .map(|(_, g, id)| active.member_tag(*g, *id))
            .collect();
        let present: HashSet<Vec<u8>> = tx.present_tags(&new_tags).await?.into_iter().collect();
        let rewritten = moves.len() as u64;
        let (dropped, kept): (Vec<_>, Vec<_>) = moves
            .into_iter()
            .zip(new_tags)
            .partition(|(_, new)| present.contains(new));
        let dropped: Vec<Vec<u8>> = dropped.into_iter().map(|((old, _, _), _)| old).collect();
        tx.delete_members(&dropped).await?;
        let kept: Vec<(Vec<u8>, GroupId, Uuid)> = kept.into_iter().map(|(m, _)| m).collect();
        tx.retag_members(active, &kept).await?;
        tx.append(
            context,
            &[NewEvent::new(action::KEY_ROTATION_RESEALED, None)],
        )
        .await?;
        Ok((rewritten, next))
    }
}
