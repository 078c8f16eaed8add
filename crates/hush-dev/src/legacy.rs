//! `hush-dev gen-legacy`: writes a realistic synthetic legacy export in the format `hush
//! migrate` reads (see `hush::migrate`): heavy-tailed group sizes (most groups small, a few
//! with tens of thousands of members), corporate members and some guests. For tests and the
//! migration benchmark; an operator migrates a real export.

use anyhow::Context as _;
use hush::migrate::{LegacyGroup, LegacyMember};
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use std::io::Write as _;
use std::path::PathBuf;

/// The shape of a synthetic export: how many groups, drawn from how many people, and the size
/// of the largest group. `gen-legacy` and the migration benchmark take the same options.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ExportShape {
    /// Groups in the export.
    #[arg(long, default_value_t = 2200)]
    pub groups: usize,
    /// Distinct people the members are drawn from.
    #[arg(long, default_value_t = 200_000)]
    pub users: usize,
    /// Size of the largest group (the rest fall off as rank^-1.3, at least 3).
    #[arg(long, default_value_t = 40_000)]
    pub largest: usize,
}

/// Options of `hush-dev gen-legacy`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenLegacyArgs {
    #[command(flatten)]
    pub shape: ExportShape,
    /// Random seed (the same seed writes the same file).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Where to write the export (NDJSON, one group per line).
    #[arg(long)]
    pub out: PathBuf,
}

/// What a generated export holds.
#[derive(Debug, Clone, Copy)]
pub struct GenSummary {
    /// Groups written.
    pub groups: usize,
    /// Memberships written.
    pub memberships: usize,
    /// The largest group's size.
    pub largest: usize,
}

/// Writes a synthetic export.
pub fn gen_legacy(args: &GenLegacyArgs) -> anyhow::Result<GenSummary> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    // Addresses differ from seed to seed, so exports of two seeds migrate into one stack (a
    // contact address is unique there); the same seed still writes the same file.
    let run: u16 = rng.gen();
    let users = args.shape.users.max(10);
    let mut sizes: Vec<usize> = (1..=args.shape.groups)
        .map(|rank| {
            let s = args.shape.largest as f64 / (rank as f64).powf(1.3);
            (s as usize).clamp(3, users)
        })
        .collect();
    sizes.shuffle(&mut rng);
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut memberships = 0;
    for (i, size) in sizes.iter().enumerate() {
        let label = match rng.gen_range(0..100) {
            0..70 => "General",
            70..95 => "Confidential",
            _ => "Highly Confidential",
        };
        let owners = (0..rng.gen_range(1..=3))
            .map(|_| format!("user{:06}", rng.gen_range(0..users)))
            .collect();
        let members = rand::seq::index::sample(&mut rng, users, *size)
            .into_iter()
            .map(|u| {
                // 2% are guests, known by a partner address only.
                if u % 50 == 49 {
                    LegacyMember {
                        subject: None,
                        email: Some(format!("guest{u:06}@partner.example")),
                    }
                } else {
                    LegacyMember {
                        subject: Some(format!("user{u:06}")),
                        email: Some(format!("user{u:06}@corp.example")),
                    }
                }
            })
            .collect();
        let g = LegacyGroup {
            name: format!("Legacy group {i:04}"),
            contact_address: format!("legacy-{run:04x}-{i:04}@old.example"),
            label: label.into(),
            owners,
            members,
        };
        memberships += size;
        serde_json::to_writer(&mut out, &g)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(GenSummary {
        groups: args.shape.groups,
        memberships,
        largest: sizes.iter().copied().max().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_exports_are_heavy_tailed_and_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let args = GenLegacyArgs {
            shape: ExportShape {
                groups: 300,
                users: 5000,
                largest: 3000,
            },
            seed: 3,
            out: dir.path().join("a.ndjson"),
        };
        let s = gen_legacy(&args).unwrap();
        assert_eq!(s.groups, 300);
        assert_eq!(s.largest, 3000);
        let again = gen_legacy(&GenLegacyArgs {
            out: dir.path().join("b.ndjson"),
            ..args.clone()
        })
        .unwrap();
        assert_eq!(again.memberships, s.memberships);
        assert_eq!(
            std::fs::read(&args.out).unwrap(),
            std::fs::read(dir.path().join("b.ndjson")).unwrap(),
            "the same seed writes the same file"
        );
        // Another seed, other contact addresses: both exports can go into one stack.
        let other = GenLegacyArgs {
            seed: 4,
            out: dir.path().join("c.ndjson"),
            ..args.clone()
        };
        gen_legacy(&other).unwrap();
        let address = |p: &std::path::Path| -> String {
            let text = std::fs::read_to_string(p).unwrap();
            let g: LegacyGroup = serde_json::from_str(text.lines().next().unwrap()).unwrap();
            g.contact_address
        };
        assert_ne!(address(&args.out), address(&other.out));
        let text = std::fs::read_to_string(&args.out).unwrap();
        let sizes: Vec<usize> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<LegacyGroup>(l)
                    .unwrap()
                    .members
                    .len()
            })
            .collect();
        let small = sizes.iter().filter(|s| **s < 50).count();
        assert!(small > 200, "most groups are small: {small}");
        assert!(sizes.iter().any(|s| *s >= 1000));
    }
}
