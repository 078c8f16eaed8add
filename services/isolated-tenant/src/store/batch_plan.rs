//! What a bulk batch does, decided in memory before anything is written, so the store can
//! write a whole chunk in a handful of set-based statements (ARCHITECTURE.md: "never a round
//! trip per row").
//!
//! The store reads every identity the batch could be about in one go (by the tags of every
//! subject and address it names), hands them here opened, and gets back the final state of
//! each (group, identity) pair the batch touched and the identities to write: those it
//! creates, and known ones whose row says something new. A known person's row is not rewritten
//! for a membership alone (no per-person row ties their groups together, issue 16). Operations are applied in order, so an add followed by a remove of the same person
//! in the same group ends with no membership, exactly as if they ran one by one.
//!
//! Batch operations come from bulk jobs, never from the person themself with a token, so no
//! operation binds a subject to an address or moves an address between identities
//! ([`identity::plan_add`] only does that for vouched-for writes); that is what makes a batch
//! plannable without reading the database between operations. Each add is still checked
//! against its group's label with the person's resolved kind before it counts (the same
//! `domain::may_enter` as a single add).

use crate::identity::{self, AddPlan, CorporateDomains, Known, Target};
use crate::seal::Profile;
use domain::{Email, GroupId, Label, Subject};
use std::collections::{BTreeMap, HashMap, HashSet};
use tenant_api::{ApplyBatch, BatchOpKind, BatchOutcome, MemberRef};
use uuid::Uuid;

/// An identity as the batch sees it: opened from the database, or created by an add in it.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub id: Uuid,
    pub profile: Profile,
    /// Whether its row carries the tag of its address.
    pub email_owned: bool,
    /// Whether its row is to be written when the batch adds it anywhere: it is not under the
    /// active key yet, or the batch changed what it says.
    pub changed: bool,
}

/// Everything the batch writes.
#[derive(Debug, Default)]
pub(crate) struct BatchPlan {
    /// Counts by outcome, as the batch answers them.
    pub outcome: BatchOutcome,
    /// For every (group, identity) an operation applied to, whether the membership holds at
    /// the end of the batch. Ordered, so the statements built from it are the same for the
    /// same batch.
    pub memberships: BTreeMap<(GroupId, Uuid), bool>,
    /// The identities to write (created, or known and changed, and added somewhere), in id
    /// order.
    pub identities: Vec<Person>,
    /// Every applied operation in order, with the identity it applied to (for a removal, the
    /// first candidate; `None` for someone the tenant has never seen): what the audit chain
    /// records for the batch.
    pub applied: Vec<(BatchOpKind, GroupId, Option<Uuid>)>,
}

/// Plans `batch` over `known` (every identity the store found by the batch's subjects and
/// addresses, opened) for the groups in `held` (those that exist, held for the transaction).
pub(crate) fn plan(
    batch: &ApplyBatch,
    held: &HashSet<GroupId>,
    known: Vec<Person>,
    corporate: &CorporateDomains,
) -> BatchPlan {
    let labels: HashMap<GroupId, &Label> = batch
        .labels
        .iter()
        .map(|l| (l.group_id, &l.label))
        .collect();
    let mut people = known;
    // Subject and address tags are unique in the table, so each names at most one identity.
    let mut by_subject: HashMap<Subject, usize> = HashMap::new();
    let mut by_email: HashMap<Email, usize> = HashMap::new();
    for (i, p) in people.iter().enumerate() {
        index(&mut by_subject, &mut by_email, p, i);
    }
    let mut touched: HashSet<usize> = HashSet::new();
    let mut out = BatchPlan::default();
    for op in &batch.ops {
        if !held.contains(&op.group_id) {
            out.outcome.unknown_group += 1;
            continue;
        }
        if op.subject.is_none() && op.email.is_none() {
            out.outcome.unknown_identity += 1;
            continue;
        }
        // The identities this operation could be about: at most two (one by subject, one by
        // address), in the order the store's lookup for a single call would give them.
        let mut candidates: Vec<usize> = Vec::with_capacity(2);
        if let Some(&i) = op.subject.as_ref().and_then(|s| by_subject.get(s)) {
            candidates.push(i);
        }
        if let Some(&i) = op.email.as_ref().and_then(|e| by_email.get(e)) {
            if !candidates.contains(&i) {
                candidates.push(i);
            }
        }
        let view: Vec<Known<'_>> = candidates
            .iter()
            .map(|&i| Known {
                profile: &people[i].profile,
                email_owned: people[i].email_owned,
            })
            .collect();
        match op.op {
            BatchOpKind::Add => {
                let Some(label) = labels.get(&op.group_id) else {
                    out.outcome.unknown_group += 1;
                    continue;
                };
                let member = MemberRef {
                    subject: op.subject.clone(),
                    email: op.email.clone(),
                    kind: None,
                };
                let Ok(AddPlan {
                    target,
                    profile,
                    kind_known,
                    email_owned,
                    ..
                }) = identity::plan_add(&member, &view, corporate)
                else {
                    out.outcome.unknown_identity += 1;
                    continue;
                };
                // Fail closed: someone whose kind nobody knows (a subject the tenant never saw,
                // no address) enters no group.
                if !kind_known {
                    out.outcome.unknown_identity += 1;
                    continue;
                }
                if domain::may_enter(profile.kind, &label.name, &label.policy).is_err() {
                    out.outcome.label_refused += 1;
                    continue;
                }
                let index = match target {
                    Target::Existing(i) => {
                        let index = candidates[i];
                        let person = &mut people[index];
                        person.changed |=
                            person.profile != profile || person.email_owned != email_owned;
                        person.profile = profile;
                        person.email_owned = email_owned;
                        index
                    }
                    Target::Fresh => {
                        let person = Person {
                            id: Uuid::new_v4(),
                            profile,
                            email_owned,
                            changed: true,
                        };
                        index(&mut by_subject, &mut by_email, &person, people.len());
                        people.push(person);
                        people.len() - 1
                    }
                };
                let person = &people[index];
                out.memberships.insert((op.group_id, person.id), true);
                out.applied
                    .push((BatchOpKind::Add, op.group_id, Some(person.id)));
                if person.changed {
                    touched.insert(index);
                }
            }
            BatchOpKind::Remove => {
                let targets =
                    identity::removal_targets(op.subject.as_ref(), op.email.as_ref(), &view);
                let first = targets
                    .iter()
                    .flatten()
                    .next()
                    .map(|&i| people[candidates[i]].id);
                out.applied.push((BatchOpKind::Remove, op.group_id, first));
                for slot in targets.into_iter().flatten() {
                    let person = &people[candidates[slot]];
                    out.memberships.insert((op.group_id, person.id), false);
                }
            }
        }
        out.outcome.applied += 1;
    }
    let mut written: Vec<Person> = touched.into_iter().map(|i| people[i].clone()).collect();
    written.sort_by_key(|p| p.id);
    out.identities = written;
    out
}

/// Makes `person` (at `at`) findable by its subject and by the address it owns.
fn index(
    by_subject: &mut HashMap<Subject, usize>,
    by_email: &mut HashMap<Email, usize>,
    person: &Person,
    at: usize,
) {
    if let Some(s) = &person.profile.subject {
        by_subject.insert(s.clone(), at);
    }
    if let (Some(e), true) = (&person.profile.email, person.email_owned) {
        by_email.insert(e.clone(), at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{IdentityKind, JoinPolicy, LabelName, LabelPolicy, SenderPolicy, Subject};
    use tenant_api::{BatchOp, GroupLabel};

    fn group(n: u128) -> GroupId {
        GroupId::from(Uuid::from_u128(n))
    }

    fn label(guests: bool) -> Label {
        Label {
            name: LabelName::parse(if guests { "General" } else { "Confidential" }).unwrap(),
            description: String::new(),
            policy: LabelPolicy {
                guests_allowed: guests,
                agents_allowed: false,
                join_policies: vec![JoinPolicy::Open],
                sender_policy: SenderPolicy::Anyone,
                anonymous_posting: false,
                rank: 0,
            },
        }
    }

    fn op(kind: BatchOpKind, g: GroupId, subject: Option<&str>, email: Option<&str>) -> BatchOp {
        BatchOp {
            op: kind,
            group_id: g,
            subject: subject.map(|s| Subject::parse(s).unwrap()),
            email: email.map(|e| Email::parse(e).unwrap()),
        }
    }

    fn batch(ops: Vec<BatchOp>, labels: &[(GroupId, Label)]) -> ApplyBatch {
        ApplyBatch {
            ops,
            labels: labels
                .iter()
                .map(|(g, l)| GroupLabel {
                    group_id: *g,
                    label: l.clone(),
                })
                .collect(),
        }
    }

    fn corp() -> CorporateDomains {
        "corp.example".parse().unwrap()
    }

    #[test]
    fn an_add_then_a_remove_of_the_same_person_ends_with_no_membership() {
        let g = group(1);
        let b = batch(
            vec![
                op(BatchOpKind::Add, g, None, Some("ana@corp.example")),
                op(BatchOpKind::Remove, g, None, Some("ana@corp.example")),
            ],
            &[(g, label(true))],
        );
        let p = plan(&b, &HashSet::from([g]), Vec::new(), &corp());
        assert_eq!(p.outcome.applied, 2);
        assert_eq!(p.applied.len(), 2);
        assert_eq!(p.applied[0].2, p.applied[1].2, "both about the same person");
        assert_eq!(p.memberships.len(), 1);
        assert_eq!(p.memberships.values().next(), Some(&false));
        assert_eq!(p.identities.len(), 1, "made, in no group");
    }

    #[test]
    fn two_adds_of_one_new_person_make_one_identity_in_both_groups() {
        let (g1, g2) = (group(1), group(2));
        let b = batch(
            vec![
                op(
                    BatchOpKind::Add,
                    g1,
                    Some("sub-ana"),
                    Some("ana@corp.example"),
                ),
                op(BatchOpKind::Add, g2, None, Some("ana@corp.example")),
                op(BatchOpKind::Add, g2, Some("sub-ana"), None),
            ],
            &[(g1, label(true)), (g2, label(true))],
        );
        let p = plan(&b, &HashSet::from([g1, g2]), Vec::new(), &corp());
        assert_eq!(p.outcome.applied, 3);
        assert_eq!(p.identities.len(), 1);
        assert!(p.memberships.values().all(|present| *present));
        assert_eq!(p.memberships.len(), 2);
    }

    #[test]
    fn a_guest_is_refused_by_a_label_without_guests_and_nothing_is_planned_for_them() {
        let g = group(1);
        let b = batch(
            vec![op(BatchOpKind::Add, g, None, Some("eve@outside.example"))],
            &[(g, label(false))],
        );
        let p = plan(&b, &HashSet::from([g]), Vec::new(), &corp());
        assert_eq!(p.outcome.label_refused, 1);
        assert_eq!(p.outcome.applied, 0);
        assert!(p.memberships.is_empty());
        assert!(p.identities.is_empty());
    }

    #[test]
    fn unknown_groups_missing_labels_and_nameless_ops_are_counted_not_planned() {
        let (g, missing, unlabelled) = (group(1), group(2), group(3));
        let b = batch(
            vec![
                op(BatchOpKind::Add, missing, None, Some("a@corp.example")),
                op(BatchOpKind::Add, unlabelled, None, Some("a@corp.example")),
                op(BatchOpKind::Remove, g, None, None),
            ],
            &[(g, label(true))],
        );
        let p = plan(&b, &HashSet::from([g, unlabelled]), Vec::new(), &corp());
        assert_eq!(p.outcome.unknown_group, 2);
        assert_eq!(p.outcome.unknown_identity, 1);
        assert!(p.memberships.is_empty() && p.identities.is_empty());
    }

    #[test]
    fn a_removal_of_someone_never_seen_counts_as_applied_and_writes_nothing() {
        let g = group(1);
        let b = batch(
            vec![op(BatchOpKind::Remove, g, Some("nobody"), None)],
            &[(g, label(true))],
        );
        let p = plan(&b, &HashSet::from([g]), Vec::new(), &corp());
        assert_eq!(p.outcome.applied, 1);
        assert!(p.memberships.is_empty() && p.identities.is_empty());
    }

    #[test]
    fn an_unvouched_add_never_binds_a_subject_to_an_address_holder() {
        // Known by address only; a batch naming a subject and that address must not tie them
        // (only the person's own token may), so the subject becomes its own identity... unless
        // found by subject, which it is not: the address's holder is used as it is.
        let g = group(1);
        let holder = Person {
            id: Uuid::from_u128(7),
            profile: Profile {
                subject: None,
                email: Some(Email::parse("ana@corp.example").unwrap()),
                kind: IdentityKind::Member,
            },
            email_owned: true,
            changed: false,
        };
        let b = batch(
            vec![op(
                BatchOpKind::Add,
                g,
                Some("sub-ana"),
                Some("ana@corp.example"),
            )],
            &[(g, label(true))],
        );
        let p = plan(&b, &HashSet::from([g]), vec![holder], &corp());
        assert_eq!(
            p.memberships.get(&(g, Uuid::from_u128(7))),
            Some(&true),
            "the address's holder is added"
        );
        assert!(
            p.identities.is_empty(),
            "and their row, which says nothing new, is not written"
        );
    }

    #[test]
    fn known_people_added_and_removed_are_not_rewritten_but_a_row_under_an_old_key_is() {
        let (g1, g2) = (group(1), group(2));
        let known = |n: u128, mail: &str, changed: bool| Person {
            id: Uuid::from_u128(n),
            profile: Profile {
                subject: None,
                email: Some(Email::parse(mail).unwrap()),
                kind: IdentityKind::Member,
            },
            email_owned: true,
            changed,
        };
        let b = batch(
            vec![
                op(BatchOpKind::Add, g1, None, Some("ana@corp.example")),
                op(BatchOpKind::Add, g2, None, Some("ana@corp.example")),
                op(BatchOpKind::Remove, g1, None, Some("bo@corp.example")),
                op(BatchOpKind::Add, g2, None, Some("cy@corp.example")),
            ],
            &[(g1, label(true)), (g2, label(true))],
        );
        let people = vec![
            known(1, "ana@corp.example", false),
            known(2, "bo@corp.example", false),
            known(3, "cy@corp.example", true),
        ];
        let p = plan(&b, &HashSet::from([g1, g2]), people, &corp());
        assert_eq!(p.memberships.len(), 4);
        let written: Vec<Uuid> = p.identities.iter().map(|i| i.id).collect();
        assert_eq!(
            written,
            vec![Uuid::from_u128(3)],
            "only the row under an old key"
        );
    }
}
