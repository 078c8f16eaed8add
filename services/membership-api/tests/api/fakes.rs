//! In-memory stand-ins for the tenant, control-api and the clock that record what they were
//! asked.
//!
//! The tenant stand-in behaves as the contract says the real one does: it finds an identity by
//! subject, then by address; resolves the kind (the one given, else the one stored, else
//! inferred from the address: `corp.example` is the corporate domain, anything else a guest);
//! checks the label with that kind *before* writing anything; and answers adds and removals the
//! same whether or not the person was a member. Every call is recorded, refused or not, so a
//! test can prove which calls were made (or that none were).

use async_trait::async_trait;
use control_client::GroupPolicyView;
use domain::{Email, GroupId, IdentityKind, Label, Subject};
use membership_api::{AddError, Catalog, Clock, Directory, UpstreamError};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use tenant_api::{AddMember, IdentityRef, Notification};

/// The corporate domain of the tenant stand-in.
pub const CORPORATE_DOMAIN: &str = "corp.example";

/// One call the directory was asked to make, as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Add {
        group: GroupId,
        subject: Option<String>,
        email: Option<String>,
        kind: Option<IdentityKind>,
        label: String,
    },
    Remove {
        group: GroupId,
        subject: Option<String>,
        email: Option<String>,
    },
}

impl Write {
    /// A self-service add: the caller with their token's address and kind.
    pub fn add_self(group: GroupId, sub: &str, kind: IdentityKind, label: &str) -> Self {
        Self::Add {
            group,
            subject: Some(sub.into()),
            email: Some(format!("{sub}@{CORPORATE_DOMAIN}")),
            kind: Some(kind),
            label: label.into(),
        }
    }

    /// A leave: the caller's subject and their token's address.
    pub fn leave(group: GroupId, sub: &str) -> Self {
        Self::Remove {
            group,
            subject: Some(sub.into()),
            email: Some(format!("{sub}@{CORPORATE_DOMAIN}")),
        }
    }
}

struct Identity {
    subject: Option<Subject>,
    email: Option<Email>,
    kind: IdentityKind,
}

#[derive(Default)]
struct Tenant {
    identities: Vec<Identity>,
    members: BTreeSet<(GroupId, usize)>,
}

impl Tenant {
    fn find(&self, subject: Option<&Subject>, email: Option<&Email>) -> Option<usize> {
        subject
            .and_then(|s| {
                self.identities
                    .iter()
                    .position(|i| i.subject.as_ref() == Some(s))
            })
            .or_else(|| {
                email.and_then(|e| {
                    self.identities
                        .iter()
                        .position(|i| i.email.as_ref() == Some(e))
                })
            })
    }

    /// The signed-in person's own identities, as the tenant counts them: the one with their
    /// subject, and one with their address and no subject yet (never one bound to another
    /// subject).
    fn own(&self, subject: &Subject, email: Option<&Email>) -> Vec<usize> {
        self.identities
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                i.subject.as_ref() == Some(subject)
                    || (i.subject.is_none() && email.is_some() && i.email.as_ref() == email)
            })
            .map(|(n, _)| n)
            .collect()
    }
}

/// The tenant: identities, who is in which group, and every call asked of it.
#[derive(Default)]
pub struct FakeDirectory {
    tenant: Mutex<Tenant>,
    writes: Mutex<Vec<Write>>,
    down: Mutex<bool>,
    notifications: Mutex<Vec<Notification>>,
}

impl FakeDirectory {
    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock().unwrap().clone()
    }

    /// The notifications handed to the tenant, in order.
    pub fn notifications(&self) -> Vec<Notification> {
        self.notifications.lock().unwrap().clone()
    }

    pub fn clear_writes(&self) {
        self.writes.lock().unwrap().clear();
    }

    pub fn set_down(&self, down: bool) {
        *self.down.lock().unwrap() = down;
    }

    /// Makes `subject` (a corporate member, `subject@corp.example`) a member of `group`.
    pub fn put(&self, group: GroupId, subject: &str) {
        self.put_identity(
            Some(subject),
            Some(&format!("{subject}@{CORPORATE_DOMAIN}")),
            IdentityKind::Member,
        );
        let mut t = self.tenant.lock().unwrap();
        let i = t
            .find(Some(&Subject::parse(subject).unwrap()), None)
            .unwrap();
        t.members.insert((group, i));
    }

    /// Makes `who` known to the tenant (not a member of anything).
    pub fn put_identity(&self, subject: Option<&str>, email: Option<&str>, kind: IdentityKind) {
        let subject = subject.map(|s| Subject::parse(s).unwrap());
        let email = email.map(|e| Email::parse(e).unwrap());
        let mut t = self.tenant.lock().unwrap();
        if t.find(subject.as_ref(), email.as_ref()).is_none() {
            t.identities.push(Identity {
                subject,
                email,
                kind,
            });
        }
    }

    /// Makes an identity known by address only a member of `group`.
    pub fn put_email(&self, group: GroupId, email: &str, kind: IdentityKind) {
        self.put_identity(None, Some(email), kind);
        let mut t = self.tenant.lock().unwrap();
        let i = t.find(None, Some(&Email::parse(email).unwrap())).unwrap();
        t.members.insert((group, i));
    }

    pub fn contains(&self, group: GroupId, subject: &str) -> bool {
        let t = self.tenant.lock().unwrap();
        t.find(Some(&Subject::parse(subject).unwrap()), None)
            .is_some_and(|i| t.members.contains(&(group, i)))
    }

    pub fn contains_email(&self, group: GroupId, email: &str) -> bool {
        let t = self.tenant.lock().unwrap();
        t.find(None, Some(&Email::parse(email).unwrap()))
            .is_some_and(|i| t.members.contains(&(group, i)))
    }

    /// How many memberships the tenant holds, in every group.
    pub fn membership_count(&self) -> usize {
        self.tenant.lock().unwrap().members.len()
    }

    fn check_up(&self) -> Result<(), UpstreamError> {
        if *self.down.lock().unwrap() {
            return Err(UpstreamError::Unavailable {
                service: "the tenant",
                reason: "could not connect".into(),
            });
        }
        Ok(())
    }
}

fn infer(email: Option<&Email>) -> IdentityKind {
    match email {
        Some(e) if e.domain() != CORPORATE_DOMAIN => IdentityKind::Guest,
        _ => IdentityKind::Member,
    }
}

#[async_trait]
impl Directory for FakeDirectory {
    async fn add_member(&self, group: GroupId, req: &AddMember) -> Result<(), AddError> {
        let m = &req.member;
        self.writes.lock().unwrap().push(Write::Add {
            group,
            subject: m.subject.as_ref().map(|s| s.as_str().to_string()),
            email: m.email.as_ref().map(|e| e.as_str().to_string()),
            kind: m.kind,
            label: req.label.name.as_str().to_string(),
        });
        self.check_up()?;
        assert!(
            m.subject.is_some() || m.email.is_some(),
            "the tenant answers 422 to an add that names no one"
        );
        let mut t = self.tenant.lock().unwrap();
        let found = t.find(m.subject.as_ref(), m.email.as_ref());
        let kind = m
            .kind
            .or_else(|| found.map(|i| t.identities[i].kind))
            .unwrap_or_else(|| infer(m.email.as_ref()));
        // The label is checked before anything is written, member or not.
        domain::may_enter(kind, &req.label.name, &req.label.policy)
            .map_err(|r| AddError::LabelRefused(r.to_string()))?;
        let i = match found {
            Some(i) => {
                let id = &mut t.identities[i];
                id.kind = kind;
                if id.subject.is_none() {
                    id.subject.clone_from(&m.subject);
                }
                if m.email.is_some() {
                    id.email.clone_from(&m.email);
                }
                i
            }
            None => {
                t.identities.push(Identity {
                    subject: m.subject.clone(),
                    email: m.email.clone(),
                    kind,
                });
                t.identities.len() - 1
            }
        };
        t.members.insert((group, i));
        Ok(())
    }

    async fn remove_member(&self, group: GroupId, who: &IdentityRef) -> Result<(), UpstreamError> {
        self.writes.lock().unwrap().push(Write::Remove {
            group,
            subject: who.subject.as_ref().map(|s| s.as_str().to_string()),
            email: who.email.as_ref().map(|e| e.as_str().to_string()),
        });
        self.check_up()?;
        let mut t = self.tenant.lock().unwrap();
        // With a subject: the person's own identities; by address alone: whoever holds it.
        let targets = match &who.subject {
            Some(s) => t.own(s, who.email.as_ref()),
            None => t.find(None, who.email.as_ref()).into_iter().collect(),
        };
        for i in targets {
            t.members.remove(&(group, i));
        }
        Ok(())
    }

    async fn offboard(&self, who: &IdentityRef) -> Result<(), UpstreamError> {
        self.check_up()?;
        let mut t = self.tenant.lock().unwrap();
        let targets = match &who.subject {
            Some(s) => t.own(s, who.email.as_ref()),
            None => t.find(None, who.email.as_ref()).into_iter().collect(),
        };
        t.members.retain(|(_, i)| !targets.contains(i));
        Ok(())
    }

    async fn is_member(
        &self,
        group: GroupId,
        subject: &Subject,
        email: Option<&Email>,
        _kind: IdentityKind,
    ) -> Result<bool, UpstreamError> {
        self.check_up()?;
        let t = self.tenant.lock().unwrap();
        Ok(t.own(subject, email)
            .into_iter()
            .any(|i| t.members.contains(&(group, i))))
    }

    async fn groups_of(
        &self,
        subject: &Subject,
        email: Option<&Email>,
        _kind: IdentityKind,
    ) -> Result<Vec<GroupId>, UpstreamError> {
        self.check_up()?;
        let t = self.tenant.lock().unwrap();
        let own = t.own(subject, email);
        let groups: BTreeSet<GroupId> = t
            .members
            .iter()
            .filter(|(_, m)| own.contains(m))
            .map(|(g, _)| *g)
            .collect();
        Ok(groups.into_iter().collect())
    }

    async fn member_of(
        &self,
        subject: &Subject,
        email: Option<&Email>,
        kind: IdentityKind,
        groups: &[GroupId],
    ) -> Result<Vec<GroupId>, UpstreamError> {
        Ok(self
            .groups_of(subject, email, kind)
            .await?
            .into_iter()
            .filter(|g| groups.contains(g))
            .collect())
    }

    async fn notify(&self, notification: &Notification) -> Result<(), UpstreamError> {
        self.check_up()?;
        self.notifications
            .lock()
            .unwrap()
            .push(notification.clone());
        Ok(())
    }

    async fn ping(&self) -> Result<(), UpstreamError> {
        self.check_up()
    }
}

/// control-api's catalog.
#[derive(Default)]
pub struct FakeCatalog {
    groups: Mutex<HashMap<GroupId, GroupPolicyView>>,
    apps: Mutex<Vec<control_client::RelyingPartyView>>,
}

impl FakeCatalog {
    /// Registers an app (or replaces the one with the same id).
    pub fn insert_app(&self, app: control_client::RelyingPartyView) {
        let mut apps = self.apps.lock().unwrap();
        apps.retain(|a| a.id != app.id);
        apps.push(app);
    }

    pub fn insert(&self, view: GroupPolicyView) {
        self.groups.lock().unwrap().insert(view.id, view);
    }

    /// Changes a group's label (as a label admin editing its policy would).
    pub fn set_label(&self, id: GroupId, label: Label) {
        self.groups.lock().unwrap().get_mut(&id).unwrap().label = label;
    }

    pub fn set_state(&self, id: GroupId, state: domain::GroupState) {
        self.groups.lock().unwrap().get_mut(&id).unwrap().state = state;
    }

    pub fn set_join_policy(&self, id: GroupId, policy: domain::JoinPolicy) {
        self.groups
            .lock()
            .unwrap()
            .get_mut(&id)
            .unwrap()
            .join_policy = policy;
    }
}

#[async_trait]
impl Catalog for FakeCatalog {
    async fn group(&self, id: GroupId) -> Result<Option<GroupPolicyView>, UpstreamError> {
        Ok(self.groups.lock().unwrap().get(&id).cloned())
    }

    async fn groups(&self, ids: &[GroupId]) -> Result<Vec<GroupPolicyView>, UpstreamError> {
        let groups = self.groups.lock().unwrap();
        Ok(ids
            .iter()
            .filter_map(|id| groups.get(id).cloned())
            .collect())
    }

    async fn relying_party(
        &self,
        lookup: &control_client::RelyingPartyLookup,
    ) -> Result<Option<control_client::RelyingPartyView>, UpstreamError> {
        Ok(self
            .apps
            .lock()
            .unwrap()
            .iter()
            .find(|a| {
                Some(a.id) == lookup.id || Some(a.audience.as_str()) == lookup.audience.as_deref()
            })
            .cloned())
    }
}

/// A clock that moves only when told to.
pub struct FakeClock(AtomicI64);

impl FakeClock {
    pub fn new(start_ms: i64) -> Self {
        Self(AtomicI64::new(start_ms))
    }

    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
