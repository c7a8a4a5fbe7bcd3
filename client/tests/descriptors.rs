//! Out of descriptors (`EMFILE`): a sweep stops opening files for the rest of its pass,
//! says so once, and the next pass with descriptors to spare reads everyone. Alone in
//! its test binary because it lowers the process's open-file limit.

use scoreboard::{DirReader, ReadOptions, Scoreboard};

#[test]
fn running_out_of_descriptors_ends_the_pass_quietly_and_recovers() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let tmp = tempfile::tempdir().unwrap();
    let writers: Vec<Scoreboard> = (0..100)
        .map(|n| {
            let mut writer = Scoreboard::builder(tmp.path())
                .worker_id(move || format!("w{n:03}"))
                .open()
                .unwrap();
            writer.update("idle").unwrap();
            writer
        })
        .collect();
    let mut reader = DirReader::open(tmp.path(), ReadOptions::default()).unwrap();
    let before = getrlimit(Resource::Nofile);
    let in_use = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(in_use + 20),
            maximum: before.maximum,
        },
    )
    .unwrap();
    let starved = reader.sweep().unwrap();
    setrlimit(Resource::Nofile, before).unwrap();

    assert!(starved.workers.len() < 100);
    let listed_io = starved
        .skipped
        .iter()
        .filter(|s| s.to_string().contains("Too many open files"))
        .count();
    assert_eq!(listed_io, 1, "one EMFILE listed: {:?}", starved.skipped);
    assert_eq!(
        starved.workers.len() + starved.skip_counts[&scoreboard::SkipKind::Io],
        100,
        "every file is read or counted"
    );
    assert!(starved.reaped.is_empty(), "starved is not dead");

    let recovered = reader.sweep().unwrap();
    assert_eq!(recovered.workers.len(), 100);
    assert_eq!(reader.open_files(), 100);
    drop(writers);
}
