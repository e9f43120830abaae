#![no_main]
//! The station's install journal read back at start (a file on the station's disk, which the
//! factory controls): lines parsed, then replayed into lease slots and pending reports.
use std::sync::OnceLock;

use flashgate_station::provisioning::journal::{replay, Journal, JOURNAL_FILE};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| flashgate_fuzz::scratch_dir());
    let path = dir.path().join(JOURNAL_FILE);
    std::fs::write(&path, data).expect("the scratch directory is writable");
    if let Ok(records) = Journal::read(&path) {
        let _ = replay(&records);
    }
});
