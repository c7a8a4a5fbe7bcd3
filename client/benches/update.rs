//! One update of a 64-byte status: ours (mapped and pwrite) beside the syscall floor, a
//! bare `pwrite` of the same 84-byte frame. Perl's figure comes from
//! `compare-perl.sh`, which prints the ratios.

#[path = "support/fixture.rs"]
mod fixture;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use scoreboard::{Scoreboard, WriteMode};

fn update(c: &mut Criterion) {
    let tmp = fixture::scratch_dir();
    let mut group = c.benchmark_group("update_64B");

    let file = tempfile::tempfile_in(tmp.path()).unwrap();
    let mut frame = vec![0; scoreboard::frame::frame_len(64)];
    scoreboard::frame::encode_into(&mut frame, fixture::STATUS_64);
    group.bench_function("floor_pwrite", |b| {
        b.iter(|| rustix::io::pwrite(&file, black_box(&frame), 0).unwrap())
    });

    // Every update publishes a different status (two alternate), so each one pays for
    // its md5 and its store; a status equal to the one already published is a
    // separate, cheaper case.
    let mut other = *fixture::STATUS_64;
    other[0] = b'B';
    let statuses = [fixture::STATUS_64, &other];
    for (name, mode) in [("mapped", WriteMode::Mapped), ("pwrite", WriteMode::Pwrite)] {
        let mut scoreboard = Scoreboard::builder(tmp.path().join(name))
            .write_mode(mode)
            .open()
            .unwrap();
        scoreboard.update(fixture::STATUS_64).unwrap();
        assert_eq!(scoreboard.write_mode(), mode);
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                scoreboard.update(black_box(statuses[i & 1])).unwrap()
            })
        });
        group.bench_function(format!("{name}_unchanged"), |b| {
            b.iter(|| scoreboard.update(black_box(fixture::STATUS_64)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, update);
criterion_main!(benches);
