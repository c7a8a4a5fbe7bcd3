//! Live workers without processes: status files whose locks this process holds, so a
//! reader in another open file description (or another process) sees them alive.

#![allow(dead_code)] // each bench and example uses part of it

use std::fs::File;
use std::path::Path;

/// A 64-byte status, the size the speed goals are stated for.
pub const STATUS_64: &[u8; 64] =
    b"busy GET /products/1234?page=2 HTTP/1.1 from 10.0.12.34 (0.25s) ";

/// Writes `count` valid status files `status_<i>` into `dir` and locks each; the
/// returned files keep them alive until dropped. Room is made for as many descriptors
/// again, for a long-lived reader in the same process.
pub fn live_workers(dir: &Path, count: usize) -> std::io::Result<Vec<File>> {
    raise_fd_limit(2 * count as u64 + 256);
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

/// Holding 10,000 files open needs more than the usual soft limit of 1,024. Root may
/// raise the hard limit too; anyone else gets what the hard limit allows.
fn raise_fd_limit(wanted: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|current| current >= wanted) {
        return;
    }
    let raised = Rlimit {
        current: Some(wanted),
        maximum: Some(wanted.max(limit.maximum.unwrap_or(0))),
    };
    if setrlimit(Resource::Nofile, raised).is_err() {
        let hard = limit.maximum.unwrap_or(u64::MAX);
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
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

/// The environment variable that turns a bench binary into a holder of live workers.
const HOLD_VAR: &str = "SCOREBOARD_BENCH_HOLD";

/// Live workers held by a helper process (this bench binary run again), so that the
/// measuring process has its whole descriptor limit for the reader under test.
pub struct HeldElsewhere {
    child: std::process::Child,
}

impl HeldElsewhere {
    pub fn spawn(dir: &Path, count: usize) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(HOLD_VAR, format!("{count}:{}", dir.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "the holder process failed");
        HeldElsewhere { child }
    }
}

impl Drop for HeldElsewhere {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Call first in a bench's `main`: when started by [`HeldElsewhere::spawn`], holds the
/// workers until stdin closes and exits.
pub fn hold_if_asked() {
    let Ok(spec) = std::env::var(HOLD_VAR) else {
        return;
    };
    let (count, dir) = spec.split_once(':').expect("COUNT:DIR");
    let _held = live_workers(Path::new(dir), count.parse().unwrap()).unwrap();
    println!("ready");
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink()).unwrap();
    std::process::exit(0);
}
