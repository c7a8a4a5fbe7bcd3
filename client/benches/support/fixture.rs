//! Live workers without processes: status files whose locks this process holds, so a
//! reader in another open file description (or another process) sees them alive.

use std::fs::File;
use std::path::Path;

/// A 64-byte status, the size the speed goals are stated for.
pub const STATUS_64: &[u8; 64] =
    b"busy GET /products/1234?page=2 HTTP/1.1 from 10.0.12.34 (0.25s) ";

/// Writes `count` valid status files `status_<i>` into `dir` and locks each; the
/// returned files keep them alive until dropped.
pub fn live_workers(dir: &Path, count: usize) -> std::io::Result<Vec<File>> {
    raise_fd_limit(count as u64 + 256);
    let mut frame = vec![0; scoreboard::frame::frame_len(STATUS_64.len())];
    scoreboard::frame::encode_into(&mut frame, STATUS_64);
    (0..count)
        .map(|i| {
            let path = dir.join(format!("status_{}", 100_000 + i));
            std::fs::write(&path, &frame)?;
            let file = File::open(&path)?;
            file.lock()?;
            Ok(file)
        })
        .collect()
}

/// Holding 10,000 files open needs more than the usual soft limit of 1,024.
fn raise_fd_limit(wanted: u64) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if limit.current.is_some_and(|current| current < wanted) {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(wanted.min(hard)),
                maximum: limit.maximum,
            },
        );
    }
}

/// A scratch directory on tmpfs when there is one, as `/run/<service>/scoreboard` is.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir in /dev/shm")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}
