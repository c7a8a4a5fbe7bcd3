//! The byte budget bounds what a pass *reads*, not only what it keeps: files past it are
//! not read at all. Measured with the kernel's own count of bytes this process read
//! (`rchar` in /proc/self/io), so this test is alone in its binary.

use scoreboard::{DirReader, ReadOptions, frame};

fn bytes_read() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn files_past_the_byte_budget_are_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    // Frames claiming 1 MiB that never check out, in sparse files: cheap to make, each a
    // MiB to read.
    let mut header = vec![0u8; frame::HEADER_LEN];
    header[16..20].copy_from_slice(&(1u32 << 20).to_be_bytes());
    let _held: Vec<std::fs::File> = (0..100)
        .map(|n| {
            let staged = tmp.path().join("staged.tmp");
            std::fs::write(&staged, &header).unwrap();
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&staged)
                .unwrap();
            file.set_len((1 << 20) + frame::HEADER_LEN as u64).unwrap();
            file.lock().unwrap();
            std::fs::rename(&staged, tmp.path().join(format!("status_{n}"))).unwrap();
            file
        })
        .collect();
    let budget = 1 << 20;
    let options = ReadOptions {
        max_status_bytes: budget,
        ..ReadOptions::default()
    };
    let mut reader = DirReader::open(tmp.path(), options).unwrap();
    for _ in 0..3 {
        let before = bytes_read();
        let snapshot = reader.sweep().unwrap();
        let read = bytes_read() - before;
        assert_eq!(snapshot.unread.len(), 100);
        // The budget, and the directory listing itself.
        assert!(
            read <= budget as u64 + (256 << 10),
            "a pass read {read} bytes"
        );
    }
}
