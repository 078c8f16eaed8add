//! `hush migrate`: a generated legacy export imported through control-api and bulk jobs, then
//! imported again: the rerun creates nothing twice and finds its jobs done.

use crate::harness::*;
use domain::IdentityKind;
use hush::migrate::{migrate, LegacyGroup, MigrateArgs};
use hush_dev::legacy::{gen_legacy, ExportShape, GenLegacyArgs};
use std::time::Duration;

async fn a_legacy_export_migrates_and_a_rerun_changes_nothing(kind: Backend) {
    let f = Fixture::start_on(kind, 1, &[("HUSH_BULK_OPS_PER_SEC", "0")]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("legacy.ndjson");
    let generated = gen_legacy(&GenLegacyArgs {
        shape: ExportShape {
            groups: 30,
            users: 3000,
            largest: 1200,
        },
        seed: 11,
        out: file.clone(),
    })
    .unwrap();
    let args = MigrateArgs {
        file: file.clone(),
        control_url: f.cluster.url("control-api"),
        bulk_url: f.cluster.url("bulk-api"),
        token: f
            .cluster
            .token("migrator", IdentityKind::Member, &["operator"]),
        ops_per_job: 1000,
        state: None,
    };
    let first = tokio::time::timeout(Duration::from_secs(120), migrate(&args))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.groups_created, 30, "{first:?}");
    assert_eq!(first.groups_refused, 0);
    assert_eq!(
        first.applied + first.label_refused + first.unknown_identity + first.unknown_group,
        generated.memberships as u64,
        "{first:?}"
    );
    // Guests (2% of people) are refused by the groups whose label bars them, nowhere else.
    assert_eq!(first.unknown_group, 0);
    assert!(first.label_refused > 0, "{first:?}");

    let again = migrate(&args).await.unwrap();
    assert_eq!(
        (again.groups_created, again.groups_existing),
        (0, 30),
        "{again:?}"
    );
    assert_eq!(again.jobs, first.jobs);
    assert_eq!(
        again.applied, first.applied,
        "the same jobs, found by their keys"
    );

    // Spot check: the first group's corporate members are members.
    let text = std::fs::read_to_string(&file).unwrap();
    let g: LegacyGroup = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let state = std::fs::read_to_string(format!("{}.hush-state", file.display())).unwrap();
    let id =
        domain::GroupId::parse(state.lines().next().unwrap().split('\t').nth(1).unwrap()).unwrap();
    let subjects: Vec<String> = g
        .members
        .iter()
        .filter_map(|m| m.subject.clone())
        .take(50)
        .collect();
    for (s, groups) in subjects.iter().zip(f.groups_of(&subjects).await) {
        assert!(groups.contains(&id), "{s}");
    }
    f.finish().await;
}

service_kit::backend_tests!(a_legacy_export_migrates_and_a_rerun_changes_nothing,);
