//! Who a membership write is about, and what kind of identity they are: the pure decisions the
//! store makes inside its transactions, kept apart so they can be tested exhaustively.
//!
//! An identity is found by its subject first, then by its address. Paths about one signed-in
//! person ("am I a member", "my groups", leaving) consider only their own identities (`own`):
//! the one with their subject, and one with their address and no subject yet. A write that
//! carries a kind comes from the person themself, present with a token from the IdP
//! (self-join, approval of their own request, invite redemption): only such a write may tie a
//! subject to an address (`plan_add`). An owner or operator adding by address cannot, or
//! an owner could route someone else's membership (and mail) to an address of their choosing.
//!
//! Kinds: the IdP's word when the person is present; else the kind the tenant stored; else
//! inferred from the address ([`CorporateDomains::infer`]); else unknown, and an identity of
//! unknown kind is added to no group (fail closed: a guess would let an AI agent or a guest
//! named by subject alone into a group whose label bars them).

use crate::seal::Profile;
use domain::{Email, IdentityKind, Subject};
use std::fmt;
use std::str::FromStr;
use tenant_api::MemberRef;

/// The mail domains whose addresses belong to the company's own people
/// (`HUSH_CORPORATE_DOMAINS`). Empty means no domain is corporate: nobody is taken for an
/// employee by their address alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorporateDomains(Vec<String>, DirectorySync);

/// Whether the IdP provisions people over SCIM (`HUSH_DIRECTORY_SYNC`): then the directory
/// knows everyone's kind, and nobody's kind is inferred from an address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectorySync(pub bool);

impl CorporateDomains {
    /// The same domains, with directory sync on or off.
    #[must_use]
    pub fn with_directory_sync(mut self, sync: DirectorySync) -> Self {
        self.1 = sync;
        self
    }

    /// The domains, lowercased, in the order given.
    pub fn domains(&self) -> &[String] {
        &self.0
    }

    /// Whether `email` is an address of the company's own (never, when no domain is listed).
    /// Domains match exactly: `corp.example` does not cover `eu.corp.example`.
    pub fn is_corporate(&self, email: &Email) -> bool {
        self.0.iter().any(|d| d == email.domain())
    }

    /// The kind of an identity nobody vouched for: a member when its address is in the
    /// corporate domains, a guest when it is outside them, and unknown (`None`) without an
    /// address: a subject alone says nothing of whether the person is an employee, a guest or
    /// an AI agent. The first write with the person's own token replaces an inferred kind with
    /// the IdP's.
    pub fn infer(&self, email: Option<&Email>) -> Option<IdentityKind> {
        // With directory sync, someone the directory did not provide is unknown: an add of
        // them does nothing (fail closed).
        if self.1 .0 {
            return None;
        }
        email.map(|e| {
            if self.is_corporate(e) {
                IdentityKind::Member
            } else {
                IdentityKind::Guest
            }
        })
    }
}

impl FromStr for CorporateDomains {
    type Err = String;

    /// Parses `corp.example, subsidiary.example` (a leading `@` is allowed and dropped).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out: Vec<String> = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let domain = entry.trim_start_matches('@').to_ascii_lowercase();
            // The same rules as the domain of an address, by parsing one.
            Email::parse(format!("x@{domain}"))
                .map_err(|_| format!("'{entry}' is not a mail domain"))?;
            if !out.contains(&domain) {
                out.push(domain);
            }
        }
        Ok(Self(out, DirectorySync::default()))
    }
}

impl fmt::Display for CorporateDomains {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// A request names nobody: neither a subject nor an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("name the person by subject, by email, or both")]
pub struct Unidentified;

/// An identity the store found, opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known<'a> {
    /// Who it is.
    pub profile: &'a Profile,
    /// Whether its row carries the tag of its address (it can be found by address).
    pub email_owned: bool,
}

/// The index of the identity among `found` whose subject is `subject`, and of the one whose
/// address is `email` (the second left out when it is the first).
fn matches(
    subject: Option<&Subject>,
    email: Option<&Email>,
    found: &[Known<'_>],
) -> (Option<usize>, Option<usize>) {
    let by_subject = subject.and_then(|s| {
        found
            .iter()
            .position(|k| k.profile.subject.as_ref() == Some(s))
    });
    let by_email = email
        .and_then(|e| {
            found
                .iter()
                .position(|k| k.email_owned && k.profile.email.as_ref() == Some(e))
        })
        .filter(|i| Some(*i) != by_subject);
    (by_subject, by_email)
}

/// The person's own identities, by the rule every path about one signed-in person follows
/// ("am I a member", "my groups", leaving): the identity whose subject is `subject`, and an
/// identity that holds `email` and has no subject yet (the same person, added by address
/// before they were seen with a token). Never an identity bound to another subject, whatever
/// its address.
pub(crate) fn own(
    subject: &Subject,
    email: Option<&Email>,
    found: &[Known<'_>],
) -> (Option<usize>, Option<usize>) {
    let by_subject = found
        .iter()
        .position(|k| k.profile.subject.as_ref() == Some(subject));
    let by_email = email.and_then(|e| {
        found.iter().position(|k| {
            k.profile.subject.is_none() && k.email_owned && k.profile.email.as_ref() == Some(e)
        })
    });
    (by_subject, by_email)
}

/// The identities a removal is about, one slot per candidate, `None` for a candidate the store
/// did not find, so the store runs the same statements whether or not each exists (INV-3).
/// With a subject: the person's own identities ([`own`]), two slots when an address is given
/// too. By address alone: whoever holds the address.
pub(crate) fn removal_targets(
    subject: Option<&Subject>,
    email: Option<&Email>,
    found: &[Known<'_>],
) -> Vec<Option<usize>> {
    match (subject, email) {
        (Some(s), Some(_)) => {
            let (by_subject, by_email) = own(s, email, found);
            vec![by_subject, by_email]
        }
        (Some(s), None) => vec![own(s, None, found).0],
        (None, Some(_)) => vec![matches(None, email, found).1],
        (None, None) => Vec::new(),
    }
}

/// The identities an offboarding deletes: the one with the subject, else the one with the
/// address; and, when both a subject and an address are given, an identity that holds the
/// address without another subject (the same person, added by address before they were seen
/// with a token).
pub(crate) fn offboard_targets(
    subject: Option<&Subject>,
    email: Option<&Email>,
    found: &[Known<'_>],
) -> Vec<usize> {
    let (by_subject, by_email) = matches(subject, email, found);
    match (by_subject, by_email) {
        (Some(a), Some(b)) if found[b].profile.subject.is_none() => vec![a, b],
        (Some(a), _) => vec![a],
        (None, Some(b)) => vec![b],
        (None, None) => Vec::new(),
    }
}

/// Which identity an add is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// One the store found (an index into what it found).
    Existing(usize),
    /// A new identity.
    Fresh,
}

/// What an add does to identities, decided before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddPlan {
    /// The identity that becomes a member.
    pub target: Target,
    /// The target's profile after the add; its kind is the one the label must admit.
    pub profile: Profile,
    /// Whether anyone knows the target's kind (the person's token, the kind stored, or the
    /// address's domain). When not, `profile.kind` is a placeholder and the add must not
    /// happen.
    pub kind_known: bool,
    /// Whether the target's row carries the tag of its address after the add.
    pub email_owned: bool,
    /// An identity known only by the address the person's token now names: the same person,
    /// added by address earlier. Its memberships move to the target and it is deleted.
    pub merge: Option<usize>,
    /// An identity of another subject that held the address the person's token now names (the
    /// address was given to someone else): it keeps its subject and memberships, loses the
    /// address.
    pub strip: Option<usize>,
}

/// Decides what adding `member` does, given the identities found by its subject and address
/// (under any key). Binds, merges and moves addresses only when `member.kind` is given, i.e.
/// the person is present with a token.
pub(crate) fn plan_add(
    member: &MemberRef,
    found: &[Known<'_>],
    corporate: &CorporateDomains,
) -> Result<AddPlan, Unidentified> {
    if member.subject.is_none() && member.email.is_none() {
        return Err(Unidentified);
    }
    let (by_subject, by_email) = matches(member.subject.as_ref(), member.email.as_ref(), found);
    let vouched = member.kind.is_some();
    let fresh = |email_owned: bool| {
        // Nothing stored: the person's own word, else the address's domain, else unknown.
        let kind = member
            .kind
            .or_else(|| corporate.infer(member.email.as_ref()));
        let profile = Profile {
            subject: member.subject.clone(),
            email: member.email.clone(),
            // Never stored: an add of unknown kind does not happen.
            kind: kind.unwrap_or(IdentityKind::Guest),
        };
        AddPlan {
            target: Target::Fresh,
            profile,
            kind_known: kind.is_some(),
            email_owned,
            merge: None,
            strip: None,
        }
    };
    // Someone else's identity held the address (its subject differs from the one given).
    let held_by_other = |b: usize| {
        found[b]
            .profile
            .subject
            .as_ref()
            .is_some_and(|s| Some(s) != member.subject.as_ref())
    };
    let existing = |i: usize| -> AddPlan {
        let known = found[i];
        let mut profile = known.profile.clone();
        let mut email_owned = known.email_owned;
        if vouched {
            if profile.subject.is_none() {
                profile.subject.clone_from(&member.subject);
            }
            if let Some(email) = &member.email {
                profile.email = Some(email.clone());
                email_owned = true;
            }
        }
        // The person's own word, else the kind stored: an existing identity's kind is known.
        profile.kind = member.kind.unwrap_or(known.profile.kind);
        AddPlan {
            target: Target::Existing(i),
            profile,
            kind_known: true,
            email_owned,
            merge: None,
            strip: None,
        }
    };
    Ok(match (by_subject, by_email) {
        (None, None) => fresh(member.email.is_some()),
        (Some(a), None) => existing(a),
        // Not vouched for: the subject decides, the address's holder is left alone.
        (Some(a), Some(_)) if !vouched => existing(a),
        (Some(a), Some(b)) => {
            let mut plan = existing(a);
            if held_by_other(b) {
                plan.strip = Some(b);
            } else {
                plan.merge = Some(b);
            }
            plan
        }
        // The address's holder is someone else now: they lose it, the person gets their own.
        (None, Some(b)) if vouched && member.subject.is_some() && held_by_other(b) => {
            let mut plan = fresh(true);
            plan.strip = Some(b);
            plan
        }
        // Found by address: bound to the subject when vouched for, used as it is otherwise.
        (None, Some(b)) => existing(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Subject {
        Subject::parse(x).unwrap()
    }

    fn e(x: &str) -> Email {
        Email::parse(x).unwrap()
    }

    fn profile(subject: Option<&str>, email: Option<&str>, kind: IdentityKind) -> Profile {
        Profile {
            subject: subject.map(s),
            email: email.map(e),
            kind,
        }
    }

    fn req(subject: Option<&str>, email: Option<&str>, kind: Option<IdentityKind>) -> MemberRef {
        MemberRef {
            subject: subject.map(s),
            email: email.map(e),
            kind,
        }
    }

    fn known(p: &Profile) -> Known<'_> {
        Known {
            profile: p,
            email_owned: p.email.is_some(),
        }
    }

    fn corp() -> CorporateDomains {
        "corp.example".parse().unwrap()
    }

    #[test]
    fn corporate_domains_parse_lowercase_and_refuse_garbage() {
        let d: CorporateDomains = " Corp.Example , @sub.example,,corp.example"
            .parse()
            .unwrap();
        assert_eq!(d.domains(), ["corp.example", "sub.example"]);
        assert_eq!(d.to_string(), "corp.example,sub.example");
        assert!("".parse::<CorporateDomains>().unwrap().domains().is_empty());
        assert!("not a domain".parse::<CorporateDomains>().is_err());
        assert!("nodot".parse::<CorporateDomains>().is_err());
    }

    #[test]
    fn kinds_are_inferred_from_the_domain_and_nothing_else() {
        let d = corp();
        assert_eq!(
            d.infer(Some(&e("a@corp.example"))),
            Some(IdentityKind::Member)
        );
        assert_eq!(
            d.infer(Some(&e("a@partner.example"))),
            Some(IdentityKind::Guest)
        );
        assert_eq!(
            d.infer(Some(&e("a@eu.corp.example"))),
            Some(IdentityKind::Guest)
        );
        assert_eq!(
            d.infer(None),
            None,
            "a subject alone says nothing of the kind"
        );
        // No corporate domain configured: nobody is an employee by address (fail closed).
        let none = CorporateDomains::default();
        assert_eq!(
            none.infer(Some(&e("a@corp.example"))),
            Some(IdentityKind::Guest)
        );
        assert_eq!(none.infer(None), None);
        // With directory sync, nothing is inferred: the directory knows, or nobody does.
        let synced = corp().with_directory_sync(DirectorySync(true));
        assert_eq!(synced.infer(Some(&e("a@corp.example"))), None);
    }

    #[test]
    fn an_add_of_someone_nobody_knows_by_subject_alone_has_no_known_kind() {
        let bot = plan_add(&req(Some("bot1"), None, None), &[], &corp()).unwrap();
        assert!(!bot.kind_known);
        let by_address =
            plan_add(&req(None, Some("new@corp.example"), None), &[], &corp()).unwrap();
        assert!(by_address.kind_known);
        assert_eq!(by_address.profile.kind, IdentityKind::Member);
        let present = plan_add(
            &req(Some("bot1"), None, Some(IdentityKind::Agent)),
            &[],
            &corp(),
        );
        assert!(present.unwrap().kind_known);
    }

    #[test]
    fn nobody_named_is_refused() {
        assert_eq!(
            plan_add(&req(None, None, Some(IdentityKind::Member)), &[], &corp()),
            Err(Unidentified)
        );
    }

    #[test]
    fn a_stranger_gets_a_fresh_identity_of_the_inferred_or_given_kind() {
        let plan = plan_add(&req(None, Some("x@partner.example"), None), &[], &corp()).unwrap();
        assert_eq!(plan.target, Target::Fresh);
        assert_eq!(plan.profile.kind, IdentityKind::Guest);
        assert!(plan.email_owned);
        let plan = plan_add(
            &req(Some("x"), None, Some(IdentityKind::Agent)),
            &[],
            &corp(),
        )
        .unwrap();
        assert_eq!(plan.profile, profile(Some("x"), None, IdentityKind::Agent));
        assert!(!plan.email_owned);
    }

    #[test]
    fn an_owner_add_uses_the_stored_kind_and_changes_nothing_about_the_identity() {
        let a = profile(
            Some("alice"),
            Some("alice@corp.example"),
            IdentityKind::Guest,
        );
        let found = [known(&a)];
        for r in [
            req(None, Some("alice@corp.example"), None),
            req(Some("alice"), None, None),
            req(Some("alice"), Some("other@corp.example"), None),
        ] {
            let plan = plan_add(&r, &found, &corp()).unwrap();
            assert_eq!(plan.target, Target::Existing(0));
            assert_eq!(plan.profile, a, "stored kind and address kept");
            assert!(plan.merge.is_none() && plan.strip.is_none());
        }
    }

    #[test]
    fn the_person_with_a_token_binds_their_subject_to_the_identity_made_from_their_address() {
        let b = profile(None, Some("new@corp.example"), IdentityKind::Member);
        let found = [known(&b)];
        let plan = plan_add(
            &req(
                Some("newbie"),
                Some("new@corp.example"),
                Some(IdentityKind::Guest),
            ),
            &found,
            &corp(),
        )
        .unwrap();
        assert_eq!(plan.target, Target::Existing(0));
        assert_eq!(
            plan.profile,
            profile(
                Some("newbie"),
                Some("new@corp.example"),
                IdentityKind::Guest
            ),
            "bound, and the IdP's kind wins"
        );
        // Without a token the subject is not bound.
        let plan = plan_add(
            &req(Some("newbie"), Some("new@corp.example"), None),
            &found,
            &corp(),
        )
        .unwrap();
        assert_eq!(plan.profile, b);
    }

    #[test]
    fn an_address_identity_of_someone_already_known_by_subject_is_merged_into_theirs() {
        let a = profile(
            Some("alice"),
            Some("old@corp.example"),
            IdentityKind::Member,
        );
        let b = profile(None, Some("alice@corp.example"), IdentityKind::Member);
        let found = [known(&a), known(&b)];
        let r = req(
            Some("alice"),
            Some("alice@corp.example"),
            Some(IdentityKind::Member),
        );
        let plan = plan_add(&r, &found, &corp()).unwrap();
        assert_eq!(plan.target, Target::Existing(0));
        assert_eq!(plan.merge, Some(1));
        assert_eq!(plan.strip, None);
        assert_eq!(plan.profile.email, Some(e("alice@corp.example")));
        assert!(plan.email_owned);
    }

    #[test]
    fn an_address_given_to_someone_else_moves_to_them() {
        let old = profile(
            Some("former"),
            Some("desk@corp.example"),
            IdentityKind::Member,
        );
        let found = [known(&old)];
        let r = req(
            Some("successor"),
            Some("desk@corp.example"),
            Some(IdentityKind::Member),
        );
        let plan = plan_add(&r, &found, &corp()).unwrap();
        assert_eq!(plan.target, Target::Fresh);
        assert_eq!(plan.strip, Some(0));
        let mine = profile(
            Some("successor"),
            Some("x@corp.example"),
            IdentityKind::Member,
        );
        let found = [known(&mine), known(&old)];
        let plan = plan_add(&r, &found, &corp()).unwrap();
        assert_eq!(
            (plan.target, plan.strip, plan.merge),
            (Target::Existing(0), Some(1), None)
        );
    }

    #[test]
    fn an_identity_whose_address_tag_is_missing_is_not_found_by_address() {
        let legacy = profile(Some("old"), Some("a@corp.example"), IdentityKind::Member);
        let found = [Known {
            profile: &legacy,
            email_owned: false,
        }];
        assert_eq!(
            removal_targets(None, Some(&e("a@corp.example")), &found),
            vec![None]
        );
        assert_eq!(
            removal_targets(Some(&s("old")), None, &found),
            vec![Some(0)]
        );
        // The person's own token claims the address for their identity.
        let plan = plan_add(
            &req(Some("old"), None, Some(IdentityKind::Member)),
            &found,
            &corp(),
        )
        .unwrap();
        assert!(!plan.email_owned);
        let plan = plan_add(
            &req(
                Some("old"),
                Some("a@corp.example"),
                Some(IdentityKind::Member),
            ),
            &found,
            &corp(),
        )
        .unwrap();
        assert!(plan.email_owned);
    }

    #[test]
    fn removal_takes_the_persons_own_identities_and_offboarding_the_address_identity_too() {
        let a = profile(
            Some("alice"),
            Some("alice@corp.example"),
            IdentityKind::Member,
        );
        let b = profile(None, Some("alias@corp.example"), IdentityKind::Member);
        let c = profile(
            Some("carol"),
            Some("carol@corp.example"),
            IdentityKind::Member,
        );
        let found = [known(&a), known(&b), known(&c)];
        let (alice, alias, carol) = (s("alice"), e("alias@corp.example"), e("carol@corp.example"));
        // With a subject: one slot per candidate, found or not; carol's identity is never
        // alice's, even when alice names carol's address.
        assert_eq!(
            removal_targets(Some(&alice), Some(&carol), &found),
            vec![Some(0), None]
        );
        assert_eq!(
            removal_targets(Some(&alice), Some(&alias), &found),
            vec![Some(0), Some(1)]
        );
        assert_eq!(
            removal_targets(Some(&alice), Some(&e("alice@corp.example")), &found),
            vec![Some(0), None],
            "her own identity holds her address: not twice"
        );
        assert_eq!(
            removal_targets(Some(&s("nobody")), Some(&alias), &found),
            vec![None, Some(1)]
        );
        assert_eq!(
            removal_targets(Some(&s("nobody")), Some(&carol), &found),
            vec![None, None],
            "bound to another subject"
        );
        assert_eq!(
            removal_targets(Some(&s("nobody")), None, &found),
            vec![None]
        );
        // By address alone (an owner naming an address): whoever holds it.
        assert_eq!(removal_targets(None, Some(&carol), &found), vec![Some(2)]);
        assert_eq!(own(&alice, Some(&alias), &found), (Some(0), Some(1)));
        assert_eq!(own(&s("nobody"), Some(&carol), &found), (None, None));
        assert_eq!(
            offboard_targets(Some(&alice), Some(&alias), &found),
            vec![0, 1]
        );
        assert_eq!(
            offboard_targets(Some(&alice), Some(&carol), &found),
            vec![0],
            "carol is someone else"
        );
        assert_eq!(offboard_targets(None, Some(&carol), &found), vec![2]);
        assert!(offboard_targets(Some(&s("nobody")), None, &found).is_empty());
    }
}
