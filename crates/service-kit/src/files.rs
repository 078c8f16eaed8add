//! Key and secret files written once. Every service that generates a key on first start (service
//! signing keys, seal keys, the bulk job key, the audit checkpoint key, `hush deploy-init`'s
//! secrets) writes it through [`write_new`], so they all share one rule: a file that exists is
//! never replaced, a private file is readable by its owner alone, and a file appears whole or
//! not at all.

use std::io::Write as _;
use std::path::Path;

/// Who may read a file [`write_new`] creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The owner alone (mode 0600): private keys and secrets.
    Private,
    /// Anyone (mode 0644): public keys.
    Public,
}

/// Writes `contents` to `path` only if no file is there yet, creating the parent folders. The
/// file is written and synced beside the target, then linked into place, which fails rather
/// than replaces if another process got there first: a crash never leaves half a key behind.
///
/// Returns whether this call created the file; callers name the file in their errors.
pub fn write_new(path: &Path, contents: &str, access: Access) -> std::io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        uuid::Uuid::new_v4().simple()
    ));
    let result =
        write_tmp(&tmp, contents, access).and_then(|()| match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        });
    let _ = std::fs::remove_file(&tmp);
    result
}

fn write_tmp(tmp: &Path, contents: &str, access: Access) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(match access {
            Access::Private => 0o600,
            Access::Public => 0o644,
        });
    }
    #[cfg(not(unix))]
    let _ = access;
    let mut f = opts.open(tmp)?;
    f.write_all(contents.as_bytes()).and_then(|()| f.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_exists_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/seal.key");
        assert!(write_new(&path, "first\n", Access::Private).unwrap());
        assert!(!write_new(&path, "second\n", Access::Private).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\n");
        // Nothing is left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("seal.key")]);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_the_owners_alone_and_public_ones_readable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("a.key");
        let public = dir.path().join("a.pub");
        write_new(&private, "secret", Access::Private).unwrap();
        write_new(&public, "public", Access::Public).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&public), 0o644);
    }
}
