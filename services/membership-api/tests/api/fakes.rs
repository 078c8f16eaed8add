//! In-memory stand-ins for the tenant and control-api that record what they were asked.

use async_trait::async_trait;
use control_api::client::GroupPolicyView;
use domain::{GroupId, Subject};
use membership_api::{Catalog, Directory, UpstreamError};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use tenant_client::MemberRef;

/// One write the directory was asked to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Add(GroupId, Subject),
    Remove(GroupId, Subject),
}

/// The tenant: who is in which group, and every write asked of it.
#[derive(Default)]
pub struct FakeDirectory {
    members: Mutex<BTreeSet<(GroupId, Subject)>>,
    writes: Mutex<Vec<Write>>,
    down: Mutex<bool>,
}

impl FakeDirectory {
    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock().unwrap().clone()
    }

    pub fn set_down(&self, down: bool) {
        *self.down.lock().unwrap() = down;
    }

    pub fn put(&self, group: GroupId, subject: &str) {
        self.members
            .lock()
            .unwrap()
            .insert((group, Subject::parse(subject).unwrap()));
    }

    pub fn contains(&self, group: GroupId, subject: &str) -> bool {
        self.members
            .lock()
            .unwrap()
            .contains(&(group, Subject::parse(subject).unwrap()))
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

#[async_trait]
impl Directory for FakeDirectory {
    async fn add_member(&self, group: GroupId, member: MemberRef) -> Result<(), UpstreamError> {
        self.check_up()?;
        self.writes
            .lock()
            .unwrap()
            .push(Write::Add(group, member.subject.clone()));
        self.members.lock().unwrap().insert((group, member.subject));
        Ok(())
    }

    async fn remove_member(&self, group: GroupId, subject: &Subject) -> Result<(), UpstreamError> {
        self.check_up()?;
        self.writes
            .lock()
            .unwrap()
            .push(Write::Remove(group, subject.clone()));
        self.members
            .lock()
            .unwrap()
            .remove(&(group, subject.clone()));
        Ok(())
    }

    async fn is_member(&self, group: GroupId, subject: &Subject) -> Result<bool, UpstreamError> {
        self.check_up()?;
        Ok(self
            .members
            .lock()
            .unwrap()
            .contains(&(group, subject.clone())))
    }

    async fn groups_of(&self, subject: &Subject) -> Result<Vec<GroupId>, UpstreamError> {
        self.check_up()?;
        Ok(self
            .members
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s == subject)
            .map(|(g, _)| *g)
            .collect())
    }

    async fn ping(&self) -> Result<(), UpstreamError> {
        self.check_up()
    }
}

/// control-api's catalog.
#[derive(Default)]
pub struct FakeCatalog {
    groups: Mutex<HashMap<GroupId, GroupPolicyView>>,
}

impl FakeCatalog {
    pub fn insert(&self, view: GroupPolicyView) {
        self.groups.lock().unwrap().insert(view.id, view);
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
}
