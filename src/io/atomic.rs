//! Replacing a file whole: the one way the agent and `scoreboardctl` write a file that
//! something else reads (saved state, the metrics textfile, `enable`'s files).

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Writes `bytes` to `path` atomically, the file's mode `mode` whatever the umask.
///
/// The bytes go to a fresh name beside `path` (`.NAME.XXXXXX.tmp`, created with
/// `O_CREAT|O_EXCL`, so never an existing file and never through a symlink someone
/// planted), then that file is renamed over `path`: rename replaces whatever is there, a
/// symlink included, without following it, and a reader sees the old file or the new
/// one, never half of one. On any error the temporary file is removed.
///
/// The mode is set with `fchmod`, which the umask does not touch (the agent's unit has
/// `UMask=0077`; node_exporter must still read the textfile). Nothing is fsynced: every
/// file written this way is either under `/run` (gone at a crash anyway) or rewritten
/// by the next interval or the next `enable`.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(directory)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn the_file_is_replaced_whole_with_its_mode_and_nothing_left_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.prom");
        write(&path, b"one\n", 0o644).unwrap();
        write(&path, b"two\n", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let path = dir.path().join("x.json");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        write(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    }

    #[test]
    fn a_missing_directory_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none/x");
        assert!(write(&path, b"x", 0o644).is_err());
        assert!(!dir.path().join("none").exists());
    }
}
