//! Files only their owner may read: what the server writes holds every account's password hash
//! and session.

use std::path::Path;

/// Creates the file `path`, which must not exist yet, readable and writable by its owner only:
/// on unix it is created 0600, so no umask makes it readable by anyone else, not even for an
/// instant. What the server writes holds every account's password hash and session.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Creates the folder `dir` and any missing parent, each 0700 on unix (owner only), whatever
/// the umask. A folder that already exists is left as it is: it may be shared (`/tmp`, `/var/lib`)
/// and was someone's choice; the files the server puts in it are private on their own.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Gives the finished copy its name without ever replacing a file: a hard link where the file
/// system has them; elsewhere (vfat, some network shares) an exclusive create then a rename.
pub(super) fn publish(partial: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(partial, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => publish_by_rename(partial, to),
    }
}

/// [`publish`] where there are no hard links: `to` is claimed by an exclusive create (private
/// too, for the instant it is an empty placeholder), then the copy is renamed over it. A
/// placeholder the rename could not replace is removed: a file named `to` is always a whole
/// backup.
fn publish_by_rename(partial: &Path, to: &Path) -> std::io::Result<()> {
    create_private(to)?;
    std::fs::rename(partial, to).inspect_err(|_| {
        let _ = std::fs::remove_file(to);
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[cfg(unix)]
    pub(crate) fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    pub(crate) fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Folders the server makes are 0700, parents included; one that exists is not changed.
    #[cfg(unix)]
    #[test]
    fn folders_are_created_private_and_existing_ones_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o755);
        let nested = dir.path().join("a").join("b");
        create_private_dir_all(&nested).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(dir.path()), 0o755);
        create_private_dir_all(&nested).unwrap();
    }

    /// Where there are no hard links: the copy takes its name by a rename, stays 0600, never
    /// replaces a file, and a failed rename leaves no empty file under the name.
    #[cfg(unix)]
    #[test]
    fn the_rename_fallback_publishes_a_private_copy_and_nothing_else() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join("b.db.partial");
        create_private(&partial)
            .unwrap()
            .write_all(b"copy")
            .unwrap();
        let to = dir.path().join("b.db");
        publish_by_rename(&partial, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"copy");
        assert_eq!(mode(&to), 0o600);
        assert!(!partial.exists());

        create_private(&partial)
            .unwrap()
            .write_all(b"other")
            .unwrap();
        let taken = publish_by_rename(&partial, &to).unwrap_err();
        assert_eq!(taken.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&to).unwrap(), b"copy");

        let never = dir.path().join("c.db");
        assert!(publish_by_rename(&dir.path().join("missing"), &never).is_err());
        assert!(!never.exists());
    }
}
