//! `hush migrate`: a generated legacy export imported through control-api and bulk jobs, then
//! imported again: the rerun creates nothing twice and finds its jobs done.

use crate::harness::*;
use domain::IdentityKind;
use hush::migrate::{migrate, LegacyGroup, LegacyMember, MigrateArgs, Refused};
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
    // Two groups control-api refuses, at the end of the file: an unknown label, and the first
    // group's address again.
    let text = std::fs::read_to_string(&file).unwrap();
    let first_group: LegacyGroup = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let member = |s: &str| LegacyMember {
        subject: Some(s.into()),
        email: None,
    };
    let refused = [
        LegacyGroup {
            name: "Unknown label".into(),
            contact_address: "unknown-label@legacy.example".into(),
            label: "Top Secret".into(),
            owners: vec![],
            members: vec![member("u-1"), member("u-2")],
        },
        LegacyGroup {
            name: "Address taken".into(),
            contact_address: first_group.contact_address.clone(),
            label: "General".into(),
            owners: vec![],
            members: vec![member("u-3"), member("u-4"), member("u-5")],
        },
    ];
    let mut appended = text.clone();
    for g in &refused {
        appended.push_str(&serde_json::to_string(g).unwrap());
        appended.push('\n');
    }
    std::fs::write(&file, appended).unwrap();
    let lines = text.lines().count();

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
    // Each refused group is named with its line and control-api's reason; its members are
    // counted as not imported, and the run says it refused something.
    assert_eq!(first.groups_refused, 2);
    assert_eq!(first.members_of_refused_groups, 5);
    let said: Vec<(usize, &str, Refused)> = first
        .refusals
        .iter()
        .map(|r| (r.line, r.name.as_str(), r.what))
        .collect();
    assert_eq!(
        said,
        [
            (lines + 1, "Unknown label", Refused::Group),
            (lines + 2, "Address taken", Refused::Group)
        ]
    );
    // control-api's reasons: the label it does not know, the address already taken.
    for (refusal, (status, says)) in first
        .refusals
        .iter()
        .zip([("422", "Top Secret"), ("409", "address")])
    {
        assert!(
            refusal.reason.starts_with(status) && refusal.reason.contains(says),
            "{refusal:?}"
        );
    }
    assert_eq!(first.exit_status(), 2);
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
        (
            again.groups_created,
            again.groups_existing,
            again.groups_refused
        ),
        (0, 30, 2),
        "{again:?}"
    );
    assert_eq!(again.jobs, first.jobs);
    assert_eq!(
        again.applied, first.applied,
        "the same jobs, found by their keys"
    );

    // Spot check: the first group's corporate members are members.
    let g = first_group;
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
