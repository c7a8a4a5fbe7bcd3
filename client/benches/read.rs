//! Reading N live workers: the one-shot reader and the long-lived reader beside the
//! syscall floor, a bare `openat`+`flock(LOCK_NB)`+`pread`+`close` loop over the same
//! files. Per-worker figures are the group times divided by N (`compare-perl.sh`
//! prints them with Perl's beside them).

#[path = "support/fixture.rs"]
mod fixture;

use std::ffi::CString;
use std::os::fd::AsFd;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use rustix::fs::{FlockOperation, Mode, OFlags};
use scoreboard::{DirReader, ReadOptions, read_dir};

fn read(c: &mut Criterion) {
    for workers in [1_000, 10_000] {
        let tmp = fixture::scratch_dir();
        let _held = fixture::HeldElsewhere::spawn(tmp.path(), workers);
        let mut group = c.benchmark_group("read_all");
        group.throughput(Throughput::Elements(workers as u64));
        group.sample_size(20);

        let dir = rustix::fs::open(
            tmp.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let names: Vec<CString> = (0..workers)
            .map(|i| CString::new(format!("status_{}", 100_000 + i)).unwrap())
            .collect();
        let mut buf = vec![0u8; 4096];
        group.bench_function(
            BenchmarkId::new("floor_open_flock_pread_close", workers),
            |b| {
                b.iter(|| {
                    for name in &names {
                        let fd = rustix::fs::openat(
                            dir.as_fd(),
                            name,
                            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .unwrap();
                        assert!(
                            rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)
                                .is_err()
                        );
                        rustix::io::pread(&fd, &mut buf[..], 0).unwrap();
                    }
                })
            },
        );

        // The floor for a reader that keeps files open: the lock test and one read.
        let open: Vec<_> = names
            .iter()
            .map(|name| {
                rustix::fs::openat(
                    dir.as_fd(),
                    name,
                    OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .unwrap()
            })
            .collect();
        group.bench_function(BenchmarkId::new("floor_flock_pread", workers), |b| {
            b.iter(|| {
                for fd in &open {
                    assert!(
                        rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive).is_err()
                    );
                    rustix::io::pread(fd, &mut buf[..], 0).unwrap();
                }
            })
        });
        drop(open);

        group.bench_function(BenchmarkId::new("read_dir", workers), |b| {
            b.iter(|| {
                let snapshot = read_dir(tmp.path()).unwrap();
                assert_eq!(snapshot.workers.len(), workers, "{:?}", snapshot.skipped);
            })
        });

        let mut reader = DirReader::open(tmp.path(), ReadOptions::default()).unwrap();
        group.bench_function(BenchmarkId::new("dir_reader_sweep", workers), |b| {
            b.iter(|| {
                let snapshot = reader.sweep().unwrap();
                assert_eq!(snapshot.workers.len(), workers, "{:?}", snapshot.skipped);
            })
        });
        group.finish();
    }
}

criterion_group!(benches, read);

fn main() {
    fixture::hold_if_asked();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
