//! control-api's lookups, kept for the routine path (issue 17): a self-join needs the group's
//! label, join policy and state, and "my groups" the names of every group, and asking
//! control-api each time was a third of the routine path's hops. Owner actions and invite
//! redemptions do not use it: they ask control-api afresh, so a removed owner loses access at
//! once. The cache keeps what lookups answered and drops all of it the moment control-api's
//! catalog version changes ([`control_client::CatalogVersion`]: every audited catalog change and
//! every saga state change moves it), which a background task asks for every
//! [`CacheSettings::poll`]. So a change made in control-api — a join policy closed, a group
//! archived — governs self-joins within one poll interval plus one round trip (250 ms by
//! default), never longer. A label that starts barring guests or agents binds at once all the
//! same: the tenant checks the rule it keeps for the group, which control-api updates before it
//! answers, besides the label it is sent.
//!
//! - while the version has not been confirmed within two intervals (control-api slow or down),
//!   nothing cached is used: every lookup goes to control-api, and fails as it would without
//!   a cache;
//! - a lookup that started before the cache was dropped never puts its answer back;
//! - an entry is used for at most [`MAX_AGE`] whatever the version says, as a backstop.
//!
//! Relying parties (the apps that ask for access decisions) are kept the same way, by the id or
//! audience they were asked by: a decision is on every sign-in to a protected app, and a
//! disabled app, a rotated credential or a new binding governs within the same interval.
//!
//! Only what control-api shows any service is kept (the same view as the lookup); unknown
//! groups and unknown apps are not kept. The tenant checks the label it is sent again before it writes.

use crate::error::UpstreamError;
use crate::ports::Catalog;
use async_trait::async_trait;
use control_client::{
    ControlClient, ControlError, GroupPolicyView, RelyingPartyLookup, RelyingPartyView,
};
use domain::GroupId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// An entry is never used longer than this.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// Most groups kept; past it the cache starts over.
pub const MAX_ENTRIES: usize = 100_000;

/// How the cache runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How often control-api's catalog version is asked for; zero turns the cache off.
    pub poll: Duration,
}

/// Where the version comes from: control-api, or a test's stand-in.
#[async_trait]
pub trait VersionSource: Send + Sync + 'static {
    /// The catalog's current version.
    async fn version(&self) -> Result<String, ControlError>;
}

#[async_trait]
impl VersionSource for ControlClient {
    async fn version(&self) -> Result<String, ControlError> {
        self.catalog_version().await.map(|v| v.version)
    }
}

#[derive(Default)]
struct State {
    /// Bumped whenever everything is dropped; a lookup keeps its answer only if it is unchanged.
    generation: u64,
    /// The version the entries belong to, and when control-api last confirmed it.
    version: Option<(String, Instant)>,
    groups: HashMap<GroupId, (GroupPolicyView, Instant)>,
    apps: HashMap<RelyingPartyLookup, (RelyingPartyView, Instant)>,
}

/// Most apps kept; past it the apps' part of the cache starts over.
const MAX_APPS: usize = 10_000;

impl State {
    fn drop_all(&mut self) {
        self.generation += 1;
        self.groups.clear();
        self.apps.clear();
    }

    /// Whether the entries may be used: the version was confirmed within two intervals.
    fn trusted(&self, poll: Duration, now: Instant) -> bool {
        self.version
            .as_ref()
            .is_some_and(|(_, at)| now.duration_since(*at) <= poll * 2)
    }

    /// Takes in what control-api answered with the version: drops everything when it moved.
    fn confirm(&mut self, version: Result<String, ControlError>, now: Instant) {
        match version {
            Ok(v) => {
                if self.version.as_ref().is_none_or(|(old, _)| *old != v) {
                    self.drop_all();
                }
                self.version = Some((v, now));
            }
            Err(_) => {
                self.drop_all();
                self.version = None;
            }
        }
    }
}

/// A [`Catalog`] that keeps `inner`'s answers while control-api's catalog version stays put.
pub struct CachedCatalog {
    inner: Arc<dyn Catalog>,
    poll: Duration,
    state: Mutex<State>,
}

impl CachedCatalog {
    /// The cache over `inner`, its version asked of `source` every `settings.poll` by a task
    /// that ends when the cache is dropped. With a zero interval, `inner` itself.
    pub fn start(
        inner: Arc<dyn Catalog>,
        source: Arc<dyn VersionSource>,
        settings: CacheSettings,
    ) -> Arc<dyn Catalog> {
        if settings.poll.is_zero() {
            return inner;
        }
        let cache = Arc::new(Self {
            inner,
            poll: settings.poll,
            state: Mutex::new(State::default()),
        });
        tokio::spawn(watch(Arc::downgrade(&cache), source, settings.poll));
        cache
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-written in a way that
        // matters: start over.
        self.state.lock().unwrap_or_else(|poisoned| {
            let mut s = poisoned.into_inner();
            s.drop_all();
            s
        })
    }

    /// The kept views of `ids` that may be used, and the generation to store fresh answers
    /// under.
    fn kept(&self, ids: &[GroupId]) -> (Vec<GroupPolicyView>, Vec<GroupId>, Option<u64>) {
        let now = Instant::now();
        let state = self.state();
        if !state.trusted(self.poll, now) {
            return (Vec::new(), ids.to_vec(), None);
        }
        let (mut hit, mut miss) = (Vec::new(), Vec::new());
        for id in ids {
            match state.groups.get(id) {
                Some((view, at)) if now.duration_since(*at) < MAX_AGE => hit.push(view.clone()),
                _ => miss.push(*id),
            }
        }
        (hit, miss, Some(state.generation))
    }

    fn keep(&self, generation: Option<u64>, views: &[GroupPolicyView]) {
        let Some(generation) = generation else {
            return;
        };
        let now = Instant::now();
        let mut state = self.state();
        if state.generation != generation {
            return;
        }
        if state.groups.len() + views.len() > MAX_ENTRIES {
            state.groups.clear();
        }
        for v in views {
            state.groups.insert(v.id, (v.clone(), now));
        }
    }
}

/// Asks for the version every `poll` until the cache is gone.
async fn watch(cache: Weak<CachedCatalog>, source: Arc<dyn VersionSource>, poll: Duration) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cache.strong_count() == 0 {
            return;
        }
        // Bounded by the poll interval: a slow answer must not keep old entries trusted.
        let version = match tokio::time::timeout(poll, source.version()).await {
            Ok(v) => v,
            Err(_) => Err(ControlError::Unavailable("timed out".into())),
        };
        let now = Instant::now();
        let Some(cache) = cache.upgrade() else {
            return;
        };
        cache.state().confirm(version, now);
    }
}

#[async_trait]
impl Catalog for CachedCatalog {
    async fn group(&self, id: GroupId) -> Result<Option<GroupPolicyView>, UpstreamError> {
        let (mut hit, _, generation) = self.kept(&[id]);
        if let Some(view) = hit.pop() {
            return Ok(Some(view));
        }
        let found = self.inner.group(id).await?;
        if let Some(view) = &found {
            self.keep(generation, std::slice::from_ref(view));
        }
        Ok(found)
    }

    async fn groups(&self, ids: &[GroupId]) -> Result<Vec<GroupPolicyView>, UpstreamError> {
        let (mut hit, miss, generation) = self.kept(ids);
        if !miss.is_empty() {
            let found = self.inner.groups(&miss).await?;
            self.keep(generation, &found);
            hit.extend(found);
        }
        Ok(hit)
    }

    async fn relying_party(
        &self,
        lookup: &RelyingPartyLookup,
    ) -> Result<Option<RelyingPartyView>, UpstreamError> {
        let generation = {
            let now = Instant::now();
            let state = self.state();
            if !state.trusted(self.poll, now) {
                None
            } else if let Some((view, at)) = state.apps.get(lookup) {
                if now.duration_since(*at) < MAX_AGE {
                    return Ok(Some(view.clone()));
                }
                Some(state.generation)
            } else {
                Some(state.generation)
            }
        };
        let found = self.inner.relying_party(lookup).await?;
        if let (Some(view), Some(generation)) = (&found, generation) {
            let mut state = self.state();
            if state.generation == generation {
                if state.apps.len() >= MAX_APPS {
                    state.apps.clear();
                }
                state
                    .apps
                    .insert(lookup.clone(), (view.clone(), Instant::now()));
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{Email, GroupName, GroupState, JoinPolicy, Label};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// control-api as the cache sees it: a group whose state a test changes, a version that
    /// moves with it, and a count of lookups.
    struct Control {
        state: Mutex<(GroupState, u64)>,
        lookups: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
        id: GroupId,
    }

    impl Control {
        fn set(&self, s: GroupState) {
            let mut g = self.state.lock().unwrap();
            g.0 = s;
            g.1 += 1;
        }

        fn view(&self) -> GroupPolicyView {
            GroupPolicyView {
                id: self.id,
                name: GroupName::parse("Cached").unwrap(),
                state: self.state.lock().unwrap().0,
                label: Label::defaults().remove(0),
                join_policy: JoinPolicy::Open,
                owners: Vec::new(),
                contact_address: Email::parse("cached@groups.example").unwrap(),
            }
        }
    }

    #[async_trait]
    impl Catalog for Control {
        async fn group(&self, id: GroupId) -> Result<Option<GroupPolicyView>, UpstreamError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            Ok((id == self.id).then(|| self.view()))
        }
        async fn groups(&self, ids: &[GroupId]) -> Result<Vec<GroupPolicyView>, UpstreamError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            Ok(ids
                .iter()
                .filter(|i| **i == self.id)
                .map(|_| self.view())
                .collect())
        }
        async fn relying_party(
            &self,
            lookup: &RelyingPartyLookup,
        ) -> Result<Option<RelyingPartyView>, UpstreamError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            let enabled = self.state.lock().unwrap().0 == GroupState::Active;
            Ok(
                (lookup.audience.as_deref() == Some("app")).then(|| RelyingPartyView {
                    id: control_client::Uuid::nil(),
                    name: "App".into(),
                    audience: "app".into(),
                    credential_sha256: String::new(),
                    enabled,
                    resources: Vec::new(),
                }),
            )
        }
    }

    #[async_trait]
    impl VersionSource for Control {
        async fn version(&self) -> Result<String, ControlError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(ControlError::Unavailable("down".into()));
            }
            Ok(self.state.lock().unwrap().1.to_string())
        }
    }

    const POLL: Duration = Duration::from_millis(50);

    fn setup() -> (Arc<Control>, Arc<dyn Catalog>) {
        let control = Arc::new(Control {
            state: Mutex::new((GroupState::Active, 0)),
            lookups: AtomicUsize::new(0),
            down: Default::default(),
            id: GroupId::new(),
        });
        let cache = CachedCatalog::start(
            control.clone(),
            control.clone(),
            CacheSettings { poll: POLL },
        );
        (control, cache)
    }

    /// Waits, polling every few milliseconds for at most two seconds, until `cond` holds.
    async fn until(mut cond: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !cond().await {
            assert!(Instant::now() < deadline, "never happened");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the version is confirmed and a second lookup of the group is served from
    /// the cache (control-api is not asked again).
    async fn served_from_the_cache(control: &Control, cache: &Arc<dyn Catalog>) {
        let id = control.id;
        until(async || {
            cache.group(id).await.unwrap();
            let before = control.lookups.load(Ordering::SeqCst);
            cache.group(id).await.unwrap();
            control.lookups.load(Ordering::SeqCst) == before
        })
        .await;
    }

    #[tokio::test]
    async fn a_kept_lookup_serves_until_control_api_changes_then_the_change_governs() {
        let (control, cache) = setup();
        let id = control.id;
        served_from_the_cache(&control, &cache).await;
        // control-api archives the group: within a poll interval, the cache says so.
        control.set(GroupState::Archived);
        let changed = Instant::now();
        until(async || cache.group(id).await.unwrap().unwrap().state == GroupState::Archived).await;
        assert!(changed.elapsed() < POLL * 4, "took {:?}", changed.elapsed());
        // Unknown groups are not kept, and lists mix kept and fresh answers.
        assert!(cache.group(GroupId::new()).await.unwrap().is_none());
        assert_eq!(cache.groups(&[id, GroupId::new()]).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_kept_app_serves_until_control_api_changes_then_the_change_governs() {
        let (control, cache) = setup();
        served_from_the_cache(&control, &cache).await;
        let by_audience = RelyingPartyLookup {
            id: None,
            audience: Some("app".into()),
        };
        assert!(
            cache
                .relying_party(&by_audience)
                .await
                .unwrap()
                .unwrap()
                .enabled
        );
        let before = control.lookups.load(Ordering::SeqCst);
        assert!(cache.relying_party(&by_audience).await.unwrap().is_some());
        assert_eq!(control.lookups.load(Ordering::SeqCst), before, "kept");
        // The operator disables the app (any catalog change moves the version).
        control.set(GroupState::Archived);
        until(async || {
            !cache
                .relying_party(&by_audience)
                .await
                .unwrap()
                .unwrap()
                .enabled
        })
        .await;
        // Unknown apps are not kept.
        let unknown = RelyingPartyLookup {
            id: None,
            audience: Some("nobody".into()),
        };
        let before = control.lookups.load(Ordering::SeqCst);
        assert!(cache.relying_party(&unknown).await.unwrap().is_none());
        assert!(cache.relying_party(&unknown).await.unwrap().is_none());
        assert_eq!(control.lookups.load(Ordering::SeqCst), before + 2);
    }

    #[tokio::test]
    async fn while_control_api_does_not_confirm_its_version_nothing_kept_is_used() {
        let (control, cache) = setup();
        let id = control.id;
        served_from_the_cache(&control, &cache).await;
        control.down.store(true, Ordering::SeqCst);
        // Within two intervals every lookup reaches control-api again.
        until(async || {
            let before = control.lookups.load(Ordering::SeqCst);
            cache.group(id).await.unwrap();
            control.lookups.load(Ordering::SeqCst) == before + 1
        })
        .await;
        let before = control.lookups.load(Ordering::SeqCst);
        for _ in 0..3 {
            cache.group(id).await.unwrap();
        }
        assert_eq!(control.lookups.load(Ordering::SeqCst), before + 3);
    }

    #[test]
    fn an_answer_fetched_before_the_cache_was_dropped_is_not_kept() {
        let inner: Arc<dyn Catalog> = Arc::new(Control {
            state: Mutex::new((GroupState::Active, 0)),
            lookups: AtomicUsize::new(0),
            down: Default::default(),
            id: GroupId::new(),
        });
        let cache = CachedCatalog {
            inner,
            poll: POLL,
            state: Mutex::new(State::default()),
        };
        let now = Instant::now();
        cache.state().confirm(Ok("1".into()), now);
        let (_, _, generation) = cache.kept(&[GroupId::new()]);
        // The version moves while the lookup is out.
        cache.state().confirm(Ok("2".into()), now);
        let view = GroupPolicyView {
            id: GroupId::new(),
            name: GroupName::parse("Late").unwrap(),
            state: GroupState::Active,
            label: Label::defaults().remove(0),
            join_policy: JoinPolicy::Open,
            owners: Vec::new(),
            contact_address: Email::parse("late@groups.example").unwrap(),
        };
        cache.keep(generation, std::slice::from_ref(&view));
        assert!(cache.state().groups.is_empty());
    }
}
