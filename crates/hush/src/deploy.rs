//! `hush deploy-init`: the secrets docker-compose mounts, generated on the operator's machine
//! so that none is ever committed. Existing files are kept, so running it twice is safe and
//! never rotates a key by accident.

use anyhow::Context;
use domain::ServiceName;
use rand::RngCore;
use std::fs;
use std::path::Path;

const PUBLIC: [ServiceName; 3] = [
    ServiceName::ControlApi,
    ServiceName::MembershipApi,
    ServiceName::BulkApi,
];

/// Writes every key the stack needs into `dir` unless it is there already (a key is never
/// replaced): a signing key pair per public service, the tenant's seal keys and audit signing
/// key, and bulk-api's seal key. For `hush deploy-init`, `hush up` and the dev cluster.
/// Returns one line per key.
pub fn generate_keys(dir: &Path) -> anyhow::Result<Vec<String>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut report = Vec::new();
    for s in PUBLIC {
        auth::generate_service_key(dir, s)?;
        report.push(format!(
            "key pair   {}/{s}.key.pem (+ .pub.pem)",
            dir.display()
        ));
    }
    isolated_tenant::generate_seal_keys_file(&dir.join("tenant-seal.keys"))?;
    report.push(format!("seal keys  {}/tenant-seal.keys", dir.display()));
    isolated_tenant::audit::checkpoint::generate_signing_key_file(&dir.join("audit-signing.key"))?;
    report.push(format!(
        "audit key  {}/audit-signing.key (+ .pub, for hush audit verify)",
        dir.display()
    ));
    bulk_api::generate_seal_key_file(&dir.join("bulk-seal.key"))?;
    report.push(format!("seal key   {}/bulk-seal.key", dir.display()));
    membership_api::generate_seal_key_file(&dir.join("membership-seal.key"))?;
    report.push(format!("seal key   {}/membership-seal.key", dir.display()));
    membership_api::generate_decision_key_file(&dir.join("decision.key.pem"))?;
    report.push(format!(
        "decision key {}/decision.key.pem (signs apps' access decisions)",
        dir.display()
    ));
    control_api::generate_seal_key_file(&dir.join("control-seal.key"))?;
    report.push(format!("seal key   {}/control-seal.key", dir.display()));
    Ok(report)
}

/// The tenant's and control-api's `HUSH_TRUSTED_SERVICE_KEYS` for `services`, whose public keys
/// [`generate_keys`] wrote into `dir`: `name=DIR/name.pub.pem,…`.
pub fn trusted_keys(dir: &Path, services: &[ServiceName]) -> String {
    services
        .iter()
        .map(|s| format!("{s}={}", dir.join(format!("{s}.pub.pem")).display()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The uid the container image runs as (`useradd --uid 10001` in the Dockerfile): the key files
/// Compose mounts must be readable by it.
pub const IMAGE_UID: u32 = 10001;

/// The services' databases and the login role each connects as (`hush db-setup` makes both).
pub const DATABASES: [(&str, &str, &str); 4] = [
    ("control-api", "hush_control", "HUSH_CONTROL_DATABASE_URL"),
    (
        "membership-api",
        "hush_membership",
        "HUSH_MEMBERSHIP_DATABASE_URL",
    ),
    ("bulk-api", "hush_bulk", "HUSH_BULK_DATABASE_URL"),
    ("isolated-tenant", "hush_tenant", "HUSH_TENANT_DATABASE_URL"),
];

/// Writes OUT/secrets/: a signing key pair per public service, the tenant's seal keys, the
/// Postgres admin password, each service's own database role and URL, `db-setup.env` (the
/// admin URL and the four service URLs `hush db-setup` reads) and an empty IdP key set for
/// break-glass (`idp-jwks.json`, replaced by the operator). Returns one line per file written
/// or kept, and a last line on who may read the keys.
pub fn init(out: &Path) -> anyhow::Result<Vec<String>> {
    let dir = out.join("secrets");
    let mut report = generate_keys(&dir)?;

    let pg_env = dir.join("postgres.env");
    let password = match read_env(&pg_env, "POSTGRES_PASSWORD") {
        Some(p) => p,
        None => {
            let p = random_hex(24);
            write_secret(
                &pg_env,
                &format!("POSTGRES_USER=hush\nPOSTGRES_PASSWORD={p}\n"),
            )?;
            p
        }
    };
    report.push(format!("postgres   {}", pg_env.display()));
    let mut setup =
        format!("HUSH_DB_ADMIN_URL=postgres://hush:{password}@postgres:5432/postgres\n");
    for (service, db, var) in DATABASES {
        let path = dir.join(format!("{service}.env"));
        let url = match read_env(&path, "HUSH_DATABASE_URL") {
            Some(url) => url,
            None => {
                // Each service its own role, named like its database: never the admin.
                let url = format!("postgres://{db}:{}@postgres:5432/{db}", random_hex(24));
                write_secret(&path, &format!("HUSH_DATABASE_URL={url}\n"))?;
                url
            }
        };
        setup.push_str(&format!("{var}={url}\n"));
        report.push(format!("database   {}", path.display()));
    }
    let setup_env = dir.join("db-setup.env");
    if !setup_env.exists() {
        write_secret(&setup_env, &setup)?;
    }
    report.push(format!("db-setup   {}", setup_env.display()));
    let jwks = dir.join("idp-jwks.json");
    if !jwks.exists() {
        // No key: break-glass accepts no token until the operator puts the IdP's JWKS here.
        service_kit::files::write_new(
            &jwks,
            "{\"keys\": []}\n",
            service_kit::files::Access::Private,
        )?;
    }
    report.push(format!(
        "idp jwks   {} (copy your IdP's JWKS here for break-glass)",
        jwks.display()
    ));
    report.push(readable_by_image(&dir)?);
    Ok(report)
}

/// Hands the files the containers mount (every file but the `.env` files, which Compose itself
/// reads on the host) to the image's user, keeping them private. Only root may give a file
/// away: otherwise says what to run.
fn readable_by_image(dir: &Path) -> anyhow::Result<String> {
    let mounted: Vec<_> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "env"))
        .collect();
    for path in &mounted {
        match std::os::unix::fs::chown(path, Some(IMAGE_UID), None) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Ok(format!(
                    "owner      not changed (not root): the image runs as uid {IMAGE_UID}; run \
                     `sudo chown {IMAGE_UID} {d}/*.pem {d}/*.key {d}/*.keys {d}/*.json` \
                     (the .env files stay yours)",
                    d = dir.display()
                ));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("chown {}", path.display()));
            }
        }
    }
    Ok(format!(
        "owner      uid {IMAGE_UID} (the image's user) owns the mounted key files"
    ))
}

fn read_env(path: &Path, key: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_owned))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Creates `path` readable by its owner only.
fn write_secret(path: &Path, content: &str) -> anyhow::Result<()> {
    let created = service_kit::files::write_new(path, content, service_kit::files::Access::Private)
        .with_context(|| format!("creating {}", path.display()))?;
    anyhow::ensure!(created, "{} exists already", path.display());
    Ok(())
}
